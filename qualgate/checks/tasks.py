"""What kind of task an instruction asks for, where a check's verdict depends on it.

Transformation tasks ("sort these items", "delete the extra spaces", "repeat the input 5 times") have
answers that legitimately equal, reorder or repeat the input: echo and repetition checks must not reject
them for that. Found in a read of Alpaca rejections; the patterns were refined on all 52k Alpaca
instructions, each anchored on a verb *and* what it acts on, so that "in order to", "what sort of",
"reverse engineer", "capitalize on", "in the format of" or "join the club" do not count.
"""

from __future__ import annotations

import re
from functools import lru_cache

_OBJ = r"(?:the|this|these|those|them|it|each|every|all|both|two|three|following|given|provided|above|below)"
_TEXT = (r"(?:text|sentences?|words?|phrases?|paragraphs?|passages?|lists?|strings?|items?|names?|numbers?|"
         r"values?|elements?|letters?|characters?|lines?|data|input|array|sequence)")
_NUMBER = r"(?:\d+|two|three|four|five|six|seven|eight|nine|ten|twice|thrice)"

#: verb phrases of an instruction whose answer is a transformation of the input
TRANSFORM_PATTERNS = [
    # put in order: "sort", "arrange", "in alphabetical order", "order the following", "rank these"
    r"\b(?:sort|re-?order|re-?arrange|rearrange|alphabeti[sz]e|shuffle|re-?organi[sz]e)\b(?!\s+of\b)",
    rf"\b(?:organi[sz]e|align)\s+{_OBJ}\b[^.?!\n]{{0,60}}\b(?:from|by|according|in|into)\b",
    r"\barrange\b(?!\s+for\b|\s+(?:an?\s+|your\s+|my\s+)?(?:[\w-]+\s+)?(?:meetings?|date|call|visit|trip|party|"
    r"event|holiday|appointment|interview|conference|session|delivery|tour)\b)",
    r"\b(?:in|into|by)\s+(?:(?:the|an?|its|their)\s+)?(?:[\w-]+\s+){0,2}?order\b(?!\s+(?:to|for|that)\b)",
    r"\b(?:word|different)\s+order\b|\b(?:switch|change|invert|swap|revers(?:e|es|ed|ing))\s+the\s+(?:word\s+)?order\b",
    r"\border\s+of\s+(?:the\s+)?(?:following|given|these)\b",
    r"\b(?:correct|right|proper|logical|chronological|alphabetical|ascending|descending|reverse|numerical|"
    r"increasing|decreasing)\s+order\b",
    rf"(?:^|[.!?:]\s+)(?:please\s+)?order\s+{_OBJ}\b",
    rf"\border\s+(?:them|these|those|the\s+(?:following|given|provided)|(?!of\b)(?:\w+\s+)?{_TEXT})\b",
    rf"\brank\s+(?:{_OBJ}|a\s+(?:list|set)|[\w-]+\s+(?:by|from|in|according))\b(?!\s+difficulty\b)",
    rf"\bmatch\s+{_OBJ}\b[^.?!\n]{{0,60}}\b(?:with|to)\b",
    # reverse text ("reverse the string"), not "reverse engineer" or "reverse psychology"
    rf"\brevers(?:e|es|ed|ing)\s+(?:{_OBJ}|its|their|a|an|order|{_TEXT})\b(?![\s-]+engineer)",
    r"\b(?:in|its|the)\s+reverse\b(?![\s-]+(?:engineer|auction|psychology|osmosis|mortgage))",
    # delete or clean something small: spaces, duplicates, punctuation
    r"\b(?:delete|remove|strip|eliminate|get rid of)\b[^.?!\n]{0,40}\b(?:spaces?|whitespace|duplicates?|"
    r"duplicated|repeated|punctuation|commas?|blank|line ?breaks?|newlines?|characters?|letters?|vowels?|"
    r"consonants?|words?|tags?|html|emojis?|symbols?)\b",
    rf"\bclean\s+(?:up\s+)?{_OBJ}\s+(?:[\w-]+\s+)?{_TEXT}\b",
    # repeat: "repeat the input 5 times", "print Hello 10 times", "copy the text"
    rf"\b(?:repeat|duplicate|copy|echo|reprint|print|output|write|say)\b[^.?!\n]{{0,40}}\b{_NUMBER} times\b",
    r"\b(?:repeat|echo|copy) (?:the |this |back )?(?:input|text|sentence|word|phrase|following)\b",
    # change case: "capitalize the first letter", "convert to upper case", "in title case"
    r"\b(?:un)?capitali[sz]e\b(?!\s+on\b)",
    r"\b(?:in|into|to)\s+(?:[\w-]+\s+)?(?:upper|lower|title|sentence|camel|snake|kebab|pascal)[\s_-]?case\b",
    rf"\b(?:upper|lower)[\s-]?case\s+{_OBJ}\b",
    # reformat, split, join: "format the following as a table", "split into two sentences"
    r"\b(?:reformat|tabulate|punctuate|hyphenate|indent|concatenate)\b|\b(?:adjust|fix|correct)\s+the\s+formatting\b",
    rf"(?:^|[.!?:]\s+)(?:please\s+)?format\b|\bformat\s+{_OBJ}\b",
    r"\b(?:convert|change|transform|standardi[sz]e|normali[sz]e)\b[^.?!\n]{0,60}\bformat\b",
    rf"\b(?:split|divide|break|cut|separate|group)\s+(?:up\s+)?(?:an?\s+)?(?:{_OBJ}|{_TEXT})\b[^.?!\n]{{0,40}}"
    r"\b(?:into|in\s+(?:half|two|three)|with)\b",
    rf"\bsplit\s+(?:up\s+)?(?:{_OBJ}|an?)\s+(?:[\w-]+\s+){{0,2}}?{_TEXT}\b",
    rf"\b(?:combine|merge|join|connect)\s+(?:the|these|this|those|following|given|provided|{_TEXT}|"
    rf"(?:both|two|three|each|all)\s+(?:[\w-]+\s+)?{_TEXT})\b",
    r"\b(?:convert|turn|make|put|change|transform|format|organi[sz]e|present|rewrite)\b[^.?!\n]{0,60}"
    r"\b(?:into|as|in)\s+(?:an?\s+)?(?:[\w-]+\s+)?(?:list|table|matrix|bullet(?:ed)? points|json|csv|array)\b",
    r"\b(?:create|make|construct|generate|build|prepare)\s+(?:an?\s+)?(?:[\w-]+\s+){0,2}?"
    r"(?:list|table|matrix|array|vector)\s+(?:of|from|with|for|using)\s+(?:the\s+)?(?:following|given|provided|"
    r"input|these|above|below)\b(?!\s+(?:day|week|weekend|month|year)\b)",
]

_TRANSFORM = re.compile("|".join(f"(?:{p})" for p in TRANSFORM_PATTERNS), re.IGNORECASE)
#: every match of a pattern above contains one of these (lower case); an ASCII instruction with none of them
#: cannot match, and is answered without running the 28 patterns (most instructions: they cost ~0.2 ms each)
TRANSFORM_WORDS = re.compile(
    "sort|order|arrange|alphabeti|shuffle|organi|align|rank|match|revers|delete|remove|strip|eliminate|rid|"
    "clean|times|repeat|echo|copy|capitali|case|format|tabulate|punctuate|hyphenate|indent|concatenate|split|"
    "divide|break|cut|separate|group|combine|merge|join|connect|list|table|matrix|bullet|json|csv|array|vector")


def transformation_task(instruction: str) -> str | None:
    """The phrase that makes ``instruction`` a transformation task (its answer may copy, reorder or repeat
    the input), or None."""
    # the repetition and prompt_echo checks ask about the same instructions, batch by batch; the cache keeps
    # its keys alive, so only instructions of ordinary length go through it
    return _transformation_task(instruction) if len(instruction) <= 20_000 else _find_transformation(instruction)


@lru_cache(maxsize=4096)
def _transformation_task(instruction: str) -> str | None:
    return _find_transformation(instruction)


def _find_transformation(instruction: str) -> str | None:
    # ASCII only: IGNORECASE also folds a few non-ASCII letters ("ſ" is "s", "K" is "k") that lower() keeps
    if instruction.isascii() and not TRANSFORM_WORDS.search(instruction.lower()):
        return None
    match = _TRANSFORM.search(instruction)
    return match.group(0) if match else None
