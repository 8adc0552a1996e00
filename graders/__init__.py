"""Instructor-only grading code for Module 6.3 (never shipped to students)."""
