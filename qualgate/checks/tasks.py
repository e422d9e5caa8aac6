"""What kind of task an instruction asks for, where a check's verdict depends on it.

Transformation tasks ("sort these items", "delete the extra spaces", "repeat the input 5 times") have
answers that legitimately equal, reorder or repeat the input: echo and repetition checks must not reject
them for that. Found in a read of Alpaca rejections.
"""

from __future__ import annotations

import re

#: verb phrases opening (or governing) an instruction whose answer is a transformation of the input
TRANSFORM_PATTERNS = [
    r"\b(?:sort|re-?order|order|arrange|rearrange|re-?arrange|alphabeti[sz]e|rank|shuffle|reverse)\b",
    r"\b(?:delete|remove|strip|eliminate|get rid of)\b[^.?!\n]{0,40}\b(?:spaces?|whitespace|duplicates?|"
    r"punctuation|commas?|blank|line ?breaks?|newlines?|characters?|letters?|vowels?|words?|tags?|html)\b",
    r"\b(?:repeat|duplicate|copy|echo|reprint|print|output|write)\b[^.?!\n]{0,40}\b(?:\d+|two|three|four|five|six|"
    r"seven|eight|nine|ten|twice|thrice) times\b",
    r"\b(?:repeat|echo|copy) (?:the |this |back )?(?:input|text|sentence|word|phrase|following)\b",
    r"\b(?:capitali[sz]e|uppercase|lowercase|upper case|lower case|title case|camel ?case|snake ?case)\b",
    r"\bconvert\b[^.?!\n]{0,40}\b(?:upper|lower|title)\s?case\b",
    r"\b(?:format|reformat|indent|tabulate|punctuate|hyphenate|split|join|merge|concatenate|combine)\b",
]

_TRANSFORM = re.compile("|".join(f"(?:{p})" for p in TRANSFORM_PATTERNS), re.IGNORECASE)


def transformation_task(instruction: str) -> str | None:
    """The phrase that makes ``instruction`` a transformation task (its answer may copy, reorder or repeat
    the input), or None."""
    match = _TRANSFORM.search(instruction)
    return match.group(0) if match else None
