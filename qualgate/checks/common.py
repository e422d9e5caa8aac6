"""Small helpers that several check modules share, so a change to one is a change to all."""

from __future__ import annotations

import re

#: a word: letters, digits or underscores, with inner apostrophes ("don't", "l’eau") kept inside the word
WORD_RE = re.compile(r"\w+(?:['’]\w+)*")

#: a check's ``field`` parameter: a record field, or None for the configured text view
FieldName = str | None
FIELD_DOC = "record field to read; unset = the configured text view"
OUTPUT_DOC = "record field to read; null = the configured text view"


def where(field: str | None) -> str:
    """Where a finding's message says it looked: the named field, or the configured text view."""
    return f"field '{field}'" if field else "text"


def line_of(text: str, pos: int) -> int:
    """1-based line number of character ``pos`` in ``text`` (for evidence that points into a field)."""
    return text.count("\n", 0, pos) + 1


# ------------------------------------------------------------------------------------------------ code
#: a line that opens or closes a fenced code block (``` or ~~~ at its start)
FENCE_LINE = re.compile(r"^[ \t]*(?:```|~~~)", re.MULTILINE)
#: a fenced code block, up to its closing fence or the end of the text
CODE_BLOCK = re.compile(r"```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)", re.DOTALL)

#: code-like lines by how they start (every alternative anchored: ``match``) ...
_CODE_START = re.compile(
    r"[ \t]*(?:def|class|import|from|return|elif|else|try|except|finally|while|for|if|switch|case|break|"
    r"continue|public|private|protected|static|void|int|float|double|char|bool|boolean|String|const|let|var|"
    r"function|print|printf|println|console|System|SELECT|INSERT|UPDATE|DELETE|CREATE|WHERE|FROM|package|"
    r"using|namespace|struct|async|await|fn|func|echo)\b.*[:;{}()=\]]"             # a keyword, then a symbol
    r"|[ \t]*(?:SET|READ|PRINT|DECLARE|WHILE|IF|ELSE|ELSEIF|END\w*|FOR|RETURN|FUNCTION|BEGIN|START|STOP|INPUT|"
    r"OUTPUT|CALL|REPEAT|UNTIL|DO)\b"                                                    # pseudocode
    r"|[ \t]*(?:return|break|continue|pass|else|end|done|fi)\b[^.!?]*$"                 # bare statements
    r"|\s*(?:from\s+\S+\s+import\b|import\s+[\w.]+(?:\s+as\s+\w+)?\s*$|using\s+namespace\b|"  # imports,
    r"(?:SELECT|INSERT|UPDATE|DELETE|CREATE|FROM|WHERE)\b)"                              # SQL clauses
    r"|[ \t]*(?://|/\*|#\s*include)"                                                     # comments, includes
    r"|[ \t]*</?[A-Za-z][\w-]*(?:\s+[\w:-]+=[^>]*)?/?>"                                   # a tag ("<no input>" is not)
    r"|\s*[{}\])]"                                                                       # braces, closing brackets
    r"|[ \t]*[A-Za-z_][\w.\[\]'\"]*[ \t]*(?:[-+*/%|&]|//|\*\*)?=[ \t]*[^=\s]"            # assignments
    r"|[ \t]*[A-Za-z_][\w.]*\(.*\)[ \t]*[:,;]?[ \t]*$")                                  # calls
#: ... or by how they end
_CODE_END = re.compile(r"[;{}]\s*(?://.*)?$")


def code_line(line: str) -> bool:
    """A line (no newline in it) that looks like code: a statement, declaration, pseudocode, comment, tag,
    bracket, assignment or call, or a line ending in ``;``, ``{`` or ``}``. The language check
    leaves such lines out; the repetition and quality checks do not judge texts made mostly of them. (Operators
    anywhere in a line, ``==`` or ``&&``, are not enough: symbol soup, a junk text to reject, is full of them.)"""
    return bool(_CODE_START.match(line) or _CODE_END.search(line))
