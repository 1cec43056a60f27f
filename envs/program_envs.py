"""The program envs (stdin/stdout problems in C, or in any language of the sandbox's table): the rows of the env
catalog that a translation may start from."""

from __future__ import annotations

from verifarm.envs.base import EnvEntry
from verifarm.envs.c_program import CProgramFamily
from verifarm.envs.program import ProgramFamily
from verifarm.sandbox.languages import LANGUAGE_NAMES

PROGRAM_ENVS: dict[str, EnvEntry] = {
    "verifarm/CProgram-v0": EnvEntry(CProgramFamily, languages=("c",)),
    "verifarm/CProgramMultiTurn-v0": EnvEntry(CProgramFamily, {"multi_turn": True}, languages=("c",)),
    "verifarm/Program-v0": EnvEntry(ProgramFamily, languages=LANGUAGE_NAMES),
    "verifarm/ProgramMultiTurn-v0": EnvEntry(ProgramFamily, {"multi_turn": True}, languages=LANGUAGE_NAMES),
}
