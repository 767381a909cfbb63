"""InterCode-Bash's reward: 0.01 + p1 + p2 + p3, each part rounded to two decimals.

- p1 = 0.33 * (1 - erf(#missing + #extra)) over the (path, status) pairs of ``git status --short``
  in the agent's root against a fresh root where the gold command ran;
- p2 = 0.33 * the share of changes in common (status A, ?? or C) whose contents hash equal
  (0.33 when there are none); paths with a dot are hashed as files, others recursively;
- p3 = 0.33 * the TF-IDF cosine similarity of the agent's last output and the gold output
  (equality when TF-IDF has no vocabulary to work with).

Success is a reward of 1.0.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

from sklearn.feature_extraction.text import TfidfVectorizer

from leap.envs.intercode_bash.sandbox import Sandbox

COMPARED_STATUSES = ("A", "??", "C")


def parse_status(status: str) -> set[tuple[str, str]]:
    """``git status --short`` lines -> {(path, code)}."""
    changes = set()
    for line in status.splitlines():
        if len(line) > 3:
            code, path = line[:2].strip(), line[3:].strip()
            if " -> " in path:  # renames: the new path
                path = path.split(" -> ", 1)[1]
            changes.add((path.strip('"'), code))
    return changes


def _file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def content_hash(root: Path, relative: str) -> str:
    """What md5sum (paths with a dot) or a recursive md5 (others) reports, as a comparable string.

    Symlinks are never followed, so a link out of the root hashes as a link, not as its target.
    """
    path = root / relative.rstrip("/")
    if path.is_symlink():
        return f"link:{path.readlink()}"
    if not path.exists():
        return "missing"
    if "." in relative:
        return _file_md5(path) if path.is_file() else "not a regular file"
    if path.is_file():
        return _file_md5(path)
    lines = []
    for child in sorted(path.rglob("*")):
        if child.is_file() and not child.is_symlink():
            lines.append(f"{child.relative_to(path)} {_file_md5(child)}")
    return "\n".join(lines)


def similarity(agent_output: str, gold_output: str) -> float:
    try:
        tfidf = TfidfVectorizer().fit_transform([agent_output, gold_output])
        return float((tfidf * tfidf.T).toarray()[0][1])
    except ValueError:  # empty vocabulary
        return 1.0 if agent_output == gold_output else 0.0


@dataclass
class RewardParts:
    file_diff: float
    file_changes: float
    answer_similarity: float
    missing: list[str]
    extra: list[str]

    @property
    def total(self) -> float:
        return round(0.01 + self.file_diff + self.file_changes + self.answer_similarity, 2)


def reward(agent: Sandbox, gold: Sandbox, agent_output: str, gold_output: str) -> RewardParts:
    diff_agent = parse_status(agent.git("status", "--short"))
    diff_gold = parse_status(gold.git("status", "--short"))
    missing, extra = diff_gold - diff_agent, diff_agent - diff_gold
    p1 = round(0.33 * (1 - math.erf(len(missing) + len(extra))), 2)
    common = [c for c in diff_agent & diff_gold if c[1] in COMPARED_STATUSES]
    p2 = 0.33
    if common:
        same = sum(content_hash(agent.root, path) == content_hash(gold.root, path) for path, _ in common)
        p2 = round(0.33 * same / len(common), 2)
    p3 = round(0.33 * similarity(agent_output, gold_output), 2)
    return RewardParts(p1, p2, p3, sorted(p for p, _ in missing), sorted(p for p, _ in extra))
