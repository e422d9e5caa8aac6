"""Chat structure: roles, user/assistant alternation, empty turns, and role labels or template tokens leaked
into a turn's content. Rule-based and per sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, field_validator

from qualgate.checks.base import Check, Measurement, Params, register
from qualgate.checks.common import FieldName, line_of
from qualgate.findings import Finding
from qualgate.regex import compile_pattern, user_patterns
from qualgate.sample import CHAT_FIELDS, Sample

DEFAULT_LEAKS = [
    r"(?m)^[ \t]*(?:#{1,4}[ \t]*)?(?:User|Assistant|Human|System)[ \t]*:",
    r"(?m)^[ \t]*#{2,4}[ \t]*(?:Instruction|Response)[ \t]*:",
    r"<\|im_start\|>|<\|im_end\|>|<\|(?:system|user|assistant|start_header_id|end_header_id|eot_id)\|>",
    r"\[/?INST\]|<</?SYS>>|<(?:start|end)_of_turn>",
]


class ChatStructureParams(Params):
    field: FieldName = Field(None, description="chat field: a list of {role, content} or ShareGPT {from, value}; "
                                               "unset = messages, else conversations or conversation")
    roles: list[str] = Field(default_factory=lambda: ["system", "user", "assistant"], min_length=1,
                             description="roles allowed (after aliases)")
    aliases: dict[str, str] = Field(default_factory=lambda: {"human": "user", "gpt": "assistant"},
                                    description="role names mapped before checking (ShareGPT's human and gpt)")
    system_role: str = Field("system", description="role allowed once, as the first turn only")
    first_role: str | None = Field("user", description="role of the first turn after the system message; null = any")
    final_role: str | None = Field("assistant", description="role of the last turn; null = any")
    min_turns: int = Field(2, ge=0, description="fewest turns, not counting the system message")
    leak_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_LEAKS),
                                     description="regexes for role labels or chat-template tokens inside content; "
                                                 "replaces the built-in list")
    extra_leak_patterns: list[str] = Field(default_factory=list, description="regexes added to the leak list")
    leak_roles: list[str] = Field(default_factory=lambda: ["user", "assistant"],
                                  description="roles whose content is searched for leaked role text")

    _v = field_validator("leak_patterns", "extra_leak_patterns")(user_patterns)


def _turn_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Evidence for a list of problem turns: the first one's turn and role, and all of them (up to 20)."""
    first = items[0]
    return {"turn": first["turn"], "role": first["role"], "turns": items[:20]}


@register
class ChatStructure(Check[ChatStructureParams]):
    """Chat is malformed: unknown roles, broken user/assistant alternation, empty turns, leaked role labels."""

    kind = "chat_structure"
    decision_params = frozenset({"min_turns"})
    params_model = ChatStructureParams
    score_names = ("not_a_chat", "turns", "unknown_roles", "bad_alternation", "empty_turns", "wrong_final_role",
                   "role_leaks")
    cost = 1

    def __init__(self, name: str, params: ChatStructureParams) -> None:
        super().__init__(name, params)
        # config patterns run on RE2 (linear time, see qualgate.regex); the built-in ones below stay on re
        self._leaks = [compile_pattern(p) for p in list(params.leak_patterns) + list(params.extra_leak_patterns)]
        self._roles = set(params.roles)

    def _not_a_chat(self, key: str, why: str, turn: int | None = None) -> Measurement:
        values: dict[str, float | None] = dict.fromkeys(self.score_names)
        values["not_a_chat"] = 1.0
        return Measurement(values, {"field": key, "why": why, "turn": turn})

    def score(self, sample: Sample) -> Measurement:
        p = self.params
        record = sample.record or {}
        keys = [p.field] if p.field else list(CHAT_FIELDS)
        key = next((k for k in keys if k in record), keys[0])
        value = record.get(key)
        if not isinstance(value, list):
            why = "is missing" if key not in record else f"is a {type(value).__name__}, not a list of turns"
            return self._not_a_chat(key, f"field '{key}' {why}")
        turns: list[tuple[str, str]] = []
        for i, msg in enumerate(value):
            if not isinstance(msg, Mapping):
                return self._not_a_chat(key, f"turn {i} is a {type(msg).__name__}, not an object", i)
            role = msg.get("role", msg.get("from"))
            content = msg.get("content", msg.get("value"))
            if not isinstance(role, str) or not isinstance(content, str):
                return self._not_a_chat(key, f"turn {i} has no string role and content", i)
            turns.append((p.aliases.get(role, role), content))

        unknown, alternation, empty, leaks = [], [], [], []
        previous: str | None = None
        body = 0
        for i, (role, content) in enumerate(turns):
            if role not in self._roles:
                unknown.append({"turn": i, "role": role})
            if not content.strip():
                empty.append({"turn": i, "role": role})
            if role == p.system_role:
                if i > 0:
                    alternation.append({"turn": i, "role": role, "why": "system message after the first turn"})
                continue
            body += 1
            if previous is None and p.first_role is not None and role != p.first_role:
                alternation.append({"turn": i, "role": role, "why": f"first turn is not from {p.first_role}"})
            elif previous == role:
                alternation.append({"turn": i, "role": role, "why": f"two {role} turns in a row"})
            previous = role
            if role in p.leak_roles:
                for rx in self._leaks:
                    if m := rx.search(content):
                        leaks.append({"turn": i, "role": role, "match": m.group(0).strip()[:80],
                                      "line": line_of(content, m.start())})
                        break
        wrong_final = 0.0
        evidence: dict[str, Any] = {"field": key, "unknown": unknown, "alternation": alternation, "empty": empty,
                                    "leaks": leaks}
        if turns and p.final_role is not None and turns[-1][0] != p.final_role:
            wrong_final = 1.0
            evidence["final"] = {"turn": len(turns) - 1, "role": turns[-1][0]}
        return Measurement({"not_a_chat": 0.0, "turns": float(body), "unknown_roles": float(len(unknown)),
                            "bad_alternation": float(len(alternation)), "empty_turns": float(len(empty)),
                            "wrong_final_role": wrong_final, "role_leaks": float(len(leaks))}, evidence)

    def decide(self, m: Measurement) -> list[Finding]:
        p, v, ev = self.params, m.values, m.evidence
        if v["not_a_chat"]:
            return [self.finding("not_a_chat", 1.0, 0, f"not a chat: {ev.get('why')}", **ev)]
        out: list[Finding] = []
        if v["unknown_roles"]:
            first = ev["unknown"][0]
            out.append(self.finding("unknown_role", v["unknown_roles"], 0,
                                    f"turn {first['turn']} has unknown role {first['role']!r} "
                                    f"(allowed: {', '.join(p.roles)})", **_turn_list(ev["unknown"])))
        if v["bad_alternation"]:
            first = ev["alternation"][0]
            out.append(self.finding("bad_alternation", v["bad_alternation"], 0,
                                    f"turn {first['turn']}: {first['why']}", **_turn_list(ev["alternation"])))
        if v["empty_turns"]:
            first = ev["empty"][0]
            out.append(self.finding("empty_turn", v["empty_turns"], 0,
                                    f"turn {first['turn']} ({first['role']}) is empty", **_turn_list(ev["empty"])))
        turns = v["turns"] or 0.0
        if turns < p.min_turns:
            out.append(self.finding("too_few_turns", turns, p.min_turns,
                                    f"chat has {int(turns)} turn(s), fewer than the minimum {p.min_turns}"))
        if v["wrong_final_role"]:
            final = ev["final"]
            out.append(self.finding("wrong_final_role", v["wrong_final_role"], 0,
                                    f"last turn ({final['turn']}) is from {final['role']!r}, not {p.final_role!r}",
                                    turn=final["turn"], role=final["role"], expected=p.final_role))
        if v["role_leaks"]:
            first = ev["leaks"][0]
            out.append(self.finding("role_leak", v["role_leaks"], 0,
                                    f"turn {first['turn']} ({first['role']}) contains role text {first['match']!r}",
                                    match=first["match"], line=first["line"], **_turn_list(ev["leaks"])))
        return out
