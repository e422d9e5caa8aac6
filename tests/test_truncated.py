"""The truncated check on answers modelled on a read of every Alpaca (synthetic) and Dolly (human) rejection:
strong signs of a cut count anywhere, a missing final period only in prose."""

from __future__ import annotations

import pytest

from qualgate import Gate

TR = [{"check": "truncated", "field": "output"}]


def reasons(output: str, **params: object) -> list[str]:
    gate = Gate.from_config({"version": 1, "checks": [{**TR[0], **params}]}, cache_dir=None)
    record = {"instruction": "Do the task.", "input": "", "output": output}
    return [f.reason for f in gate.run([record]).decisions[0].findings]


@pytest.mark.parametrize("output", [
    # verse: a haiku on one line, song lyrics, a poem line or a letter's closing ending in a comma
    "Fresh petals fill the air / A new season has begun / Sunlight on the trees",
    "Verse 1:\nI walk the road where the river bends\nMy heart still pounds but my courage stands\n\nChorus:\n"
    "Oh this is the answer I have been waiting for\nTake a look at today, I know I will never be lost in the dark",
    "I love to watch the stars dance in the night sky,",
    "Dear Dr. Smith,",
    "Thank you for your patience during these months. I am so grateful to have you in my life.\n\n"
    "With heartfelt gratitude,",
    # a tweet: tags (and emoji) end it, even when a tag finishes its sentence
    "Just finished reading 1984 by George Orwell. A must-read for anyone wanting to understand the political "
    "forces at play in our world today #1984 #Orwell #MustRead",
    "Introducing EasyFIT, the ultimate device for keeping fit! Download now and get the #HealthyLife #Fitness",
    "Just saw the best show! So entertaining, I would definitely go again with all my friends next week #Theater ✨🤩",
    # a quote and its attribution
    "\"A real friend is one who walks in when the rest of the world walks out\" - Walter Winchell",
    "The secret of getting ahead is getting started. The rest is simply a matter of keeping at it every day\n"
    "— Mark Twain",
    # forms and templates: labels ending in ':' are fields to fill
    "Customer Order Form\n\n* Name: \n* Email: \n* Shipping Address: \n* Payment Method:",
    "Thanks for your interest! Please tell us:\n\n1. How easy was it to find what you wanted?\n"
    "2. Please provide any additional feedback or comments you may have:",
    "Sign up for our newsletter!\n\nName: \nEmail: \nAge (optional):",
    # symbol strings: Morse code, a postfix expression, a timeline bar
    ".. / .- -- / .-.. . .- .-. -. .. -. --. / - --- / ... . -. -.. / .- / -- . ... ... .- --. . -",
    "a b c + -",
    "August 16th, 2020 - August 18th, 2020 ------------",
    # structured lines: a table row, a tagged sentence, a mnemonic, a timeline entry, an outline item, an arrow
    "Security | Generally more secure than Android. Fewer apps | Some issues arise from third-party stores",
    "She - Pronoun | quickly - Adverb | ran - Verb | to - Preposition | the - Determiner | store - Noun",
    "TENACity - T - Try hard, E - Endure, N - Never give up, A - Accept struggles, C - Courageous, Y - Yourself",
    "1944: Battle of the Bulge, December - Allied forces liberate France, June - Paris is free again, August",
    "IV. Conclusion\nA. Technology has had both positive and negative impacts on the world\n"
    "B. We must strive to use technology wisely in order to maximize the benefits and minimize the harms",
    "The quick brown fox jumps over the lazy dog → Quick brown fox jumps over lazy dog near the old red barn",
    # a list in one sentence: sorted events, song titles
    "Ferdinand Magellan begins the first circumnavigation of the world, Magellan reaches Tierra del Fuego, "
    "Francis Drake returns to Plymouth",
    "Stayin' Alive, Night Fever, Let's Get it On, I'll be there and Let it be",
    # one complete sentence without its period (common in human data), a filled blank, an artifact
    "No, lilies are toxic to cats if they are eaten and should not be kept in a household with cats",
    "None of the students were",
    "The factory could add robotic assembly lines. Training programs could further increase output.//EOM//",
])
def test_truncated_passes_finished_answers_that_lack_a_final_period(output: str) -> None:
    assert reasons(output) == []


@pytest.mark.parametrize("output,reason,last", [
    # prose that stops mid-sentence after finished sentences
    ("Both countries have collaborated in the European Union. Additionally, both have worked together in "
     "international organizations such as the United Nations, NATO, and the G", "ends_mid_sentence", None),
    # a dangling function word, a value cut off, a word cut at a hyphen
    ("Calcium is a chemical element with the symbol Ca and atomic number of", "dangling_ending", "of"),
    ("Mercury, Venus, Earth, Mars, Jupiter, Saturn and the", "dangling_ending", "the"),
    ("The total cost of 10 apples is $", "dangling_ending", "$"),
    ("Its cash reserves grew to $37 billion, and its free cash flow was $", "dangling_ending", "$"),
    ("Design a game where the player has to guess a secret number between 1-", "dangling_ending", "-"),
    # a sentence stopped before its value: "is equal to", "will be"
    ("The sum of 14 and 6 is equal to", "dangling_ending", "to"),
    ("Sales grew every year. A linear regression would lead us to predict that sales in 2015 will be",
     "dangling_ending", "be"),
    ("5. If the player reaches 20 points in the round, their score for the turn is", "dangling_ending", "is"),
    # a comma after a finished sentence, a colon introducing nothing
    ("The trip was long. Despite the rain and the traffic on the road back home,", "dangling_ending", ","),
    ("Here are the steps to follow, in order:", "dangling_ending", ":"),
    # an open code block
    ("Here is the function:\n\n```python\ndef area(r):\n    return 3.14 * r", "unclosed_code_block", None),
])
def test_truncated_catches_cut_answers(output: str, reason: str, last: str | None) -> None:
    gate = Gate.from_config({"version": 1, "checks": TR}, cache_dir=None)
    findings = gate.run([{"instruction": "Do it.", "output": output}]).decisions[0].findings
    assert [f.reason for f in findings] == [reason]
    if last is not None:
        assert "as if cut off" in findings[0].message and repr(last) in findings[0].message


def test_stranded_words_need_a_longer_sentence_and_are_configurable() -> None:
    assert reasons("The answer is equal to") == []  # 5 words: could fill a blank
    assert reasons("The answer is equal to", min_stranded_words=5) == ["dangling_ending"]
    assert reasons("The sum of 14 and 6 is equal to", stranded_words=[]) == []


def test_weak_signal_counts_prose_sentence_length() -> None:
    prose = "It began well. Then the report simply stops without any closing punctuation after many more words"
    prose += " than that"
    assert reasons(prose) == ["ends_mid_sentence"]
    assert reasons(prose, min_words=20) == []
