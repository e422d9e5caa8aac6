"""Answer checks (refusal, unanswerable, prompt_echo): positive and negative examples, reasons and evidence."""

from __future__ import annotations

from typing import Any

import pytest

from qualgate import Gate
from qualgate.checks.tasks import transformation_task
from qualgate.errors import ConfigError
from qualgate.findings import Finding


def run(checks: list[dict[str, Any]], records: list[dict[str, Any]]) -> list[list[Finding]]:
    gate = Gate.from_config({"version": 1, "input": {"text": "auto"}, "checks": checks}, cache_dir=None,
                            all_findings=True)
    return [d.findings for d in gate.run(records).decisions]


def findings(checks: list[dict[str, Any]], record: dict[str, Any]) -> list[Finding]:
    return run(checks, [record])[0]


def reasons(checks: list[dict[str, Any]], record: dict[str, Any]) -> list[str]:
    return [f.reason for f in findings(checks, record)]


def rec(output: str, instruction: str = "Answer the question.", input: str = "") -> dict[str, str]:
    return {"instruction": instruction, "input": input, "output": output}


# -------------------------------------------------------------------------------------------- refusal
REFUSAL = [{"check": "refusal"}]


@pytest.mark.parametrize("output", [
    "I'm sorry, but I can't help with that request.",
    "I’m sorry, but I can’t share personal information about private individuals.",
    "I cannot help with creating malware.",
    "I'm not able to provide medical diagnoses. Please see a doctor.",
    "I don't have access to your calendar, so I can't tell you when the meeting is.",
    "As an AI, I do not have personal opinions about politics.",
    "It is not appropriate for me to rank religions.",
    "I'm unable to help with predicting next week's lottery numbers.",
    "As of my knowledge cutoff in 2021, the tallest building was the Burj Khalifa.",
    "I cannot browse the internet, but here is how you can check the score yourself.",
])
def test_refusal_flags_refusals_and_deflections(output: str) -> None:
    f = findings(REFUSAL, rec(output))
    assert [x.reason for x in f] == ["refusal"]
    assert f[0].check == "refusal" and f[0].score is not None and f[0].score >= 1 and f[0].threshold == 0


def test_refusal_evidence_has_phrase_and_span() -> None:
    out = "I'm sorry, but I cannot help with that."
    f = findings(REFUSAL, rec(out))[0]
    start, end = f.evidence["span"]
    assert f.evidence["phrase"] == "I'm sorry, but I cannot" == out[start:end]
    assert f.evidence["matches"][0] == {"match": "I'm sorry, but I cannot", "start": 0, "end": 23}


@pytest.mark.parametrize("output", [
    "I'm sorry to hear that your cat is ill; here is what to do: keep her warm, offer water and call a vet.",
    "Positive",
    "4",
    "Sorry is a word used to apologise. For example: 'I am sorry I was late.'",
    "The sentence expresses regret: the speaker could not attend the meeting.",
])
def test_refusal_ignores_sympathy_and_short_answers(output: str) -> None:
    assert reasons(REFUSAL, rec(output)) == []


def test_refusal_window_limits_where_phrases_count() -> None:
    late = "Here are the steps to reset a router. " + "Unplug it and wait. " * 20 + (
        "If the customer says 'I am unable to help you', ask for a manager.")
    assert late.index("I am unable to") > 300
    assert reasons(REFUSAL, rec(late)) == []
    f = findings([{"check": "refusal", "window": None}], rec(late))
    assert [x.reason for x in f] == ["refusal"] and f[0].evidence["span"][0] > 300


def test_refusal_params_field_extra_phrases_and_max_matches() -> None:
    r = rec("Let's talk about something else. The moon orbits the earth.", "Tell me a secret.")
    assert reasons(REFUSAL, r) == []
    assert reasons([{"check": "refusal", "extra_phrases": ["let's talk about something else"]}], r) == ["refusal"]
    twice = rec("I'm unable to help with that. I don't have access to that data.")
    assert findings(REFUSAL, twice)[0].score == 2
    assert reasons([{"check": "refusal", "max_matches": 2}], twice) == []
    # field=None reads the text view (instruction + input + output)
    r = rec("Sure, here it is.", "I am unable to help my son sleep. What should I do?")
    assert reasons(REFUSAL, r) == []
    assert reasons([{"check": "refusal", "field": None}], r) == ["refusal"]


def test_refusal_missing_field_is_a_finding_and_bad_file_is_a_config_error() -> None:
    f = findings(REFUSAL, {"instruction": "Say hi.", "output_text": "hi"})
    assert f and f[0].reason == "missing_field"
    with pytest.raises((ConfigError, ValueError)):
        Gate.from_config({"version": 1, "checks": [{"check": "refusal", "phrases_file": "no-such-list.txt"}]},
                         cache_dir=None)


# --------------------------------------------------------------------------------------- unanswerable
UNANS = [{"check": "unanswerable"}]


@pytest.mark.parametrize(("instruction", "input", "match"), [
    ("Draw a picture of a cat sitting on a mat.", "", "Draw a picture"),
    ("Design a logo for my bakery called Sweet Rise.", "", "Design a logo"),
    ("Generate an image of a futuristic city at night.", "", "Generate an image"),
    ("Sing a song about the ocean.", "", "Sing a song"),
    ("Can you draw me a cat?", "", "draw me a cat"),
    ("Record a short audio clip explaining photosynthesis.", "", "Record a short audio"),
    ("Summarize the article at https://example.com/news/123", "", "Summarize the article at https://example.com/"
     "news/123"),
    ("Visit the website and list its main sections.", "", "Visit the website"),
    ("Read the attached file and summarize it.", "", "the attached file"),
    ("Describe the people in the picture above.", "", "the picture above"),
    ("What is today's weather in Paris?", "", "What is today's weather"),
    ("How is the weather in London right now?", "", "How is the weather in London right now"),
    ("What is the current stock price of Apple?", "", "What is the current stock price"),
    ("Summarize the content of this page.", "Open https://en.wikipedia.org/wiki/Moon", "Open https://en.wikipedia"
     ".org/wiki/Moon"),
])
def test_unanswerable_flags_impossible_requests(instruction: str, input: str, match: str) -> None:
    f = findings(UNANS, rec("Sure! The answer follows.", instruction, input))
    assert [x.reason for x in f] == ["impossible_request"]
    assert f[0].evidence["phrase"] == match and f[0].threshold == 0 and f[0].evidence["declined"] is False


@pytest.mark.parametrize(("instruction", "output"), [
    ("Describe an image of a sunset.", "A warm orange sun sinks below the horizon, painting the clouds pink."),
    ("Write a poem about a picture of your grandmother.", "In faded sepia she smiles, / her garden still in bloom."),
    ("Generate a list of five fruits.", "Apple, banana, cherry, mango, pear."),
    ("Explain what a URL is.", "A URL is the address of a resource on the web, such as https://example.com."),
    ("Draw a conclusion from the data.", "Sales rise in summer and fall in winter."),
    ("Draw a comparison between cats and dogs.", "Cats are independent; dogs are social."),
    ("Paint a picture with words of a busy market.", "Stalls overflow with oranges and the air smells of bread."),
    ("Create a description of an image of a forest.", "Tall pines rise through the morning mist."),
    ("Write a cover letter for a junior developer job.",
     "Dear hiring manager, I am excited to apply. I have attached my resume for your review."),
    ("Play a game of twenty questions with me.", "Great! Is it an animal?"),
    ("Explain how weather forecasts are made.", "Forecasters feed observations into numerical models."),
    ("How does the current exchange rate affect exports?", "A weaker currency makes exports cheaper abroad."),
    ("Classify the sentiment of the review.", "Positive"),
    ("What is 2 + 2?", "4"),
])
def test_unanswerable_leaves_ordinary_text_tasks_alone(instruction: str, output: str) -> None:
    assert reasons(UNANS, rec(output, instruction)) == []


@pytest.mark.parametrize(("output", "match"), [
    ("Here is the image you asked for: a red fox in the snow.", "Here is the image"),
    ("Done! I have attached the logo as a PNG.", "I have attached the logo"),
    ("[image]", "[image]"),
    ("I've uploaded it to your drive.", "I've uploaded"),
    ("Listen to the audio below for the full song.", "Listen to the audio below"),
    ("I visited the website and it lists three products.", "I visited the website"),
])
def test_unanswerable_flags_answers_that_pretend(output: str, match: str) -> None:
    f = findings(UNANS, rec(output, "Tell me about foxes."))
    assert [x.reason for x in f] == ["pretends_capability"]
    assert f[0].evidence["phrase"] == match
    start, end = f[0].evidence["span"]
    assert output[start:end] == match


def test_unanswerable_request_and_pretence_give_both_reasons() -> None:
    f = findings(UNANS, rec("Here's your logo: [Image: a bread loaf with a sun]", "Design a logo for my bakery."))
    assert [x.reason for x in f] == ["impossible_request", "pretends_capability"]
    assert f[1].score == 2 and f[1].evidence["phrase"] == "Here's your logo"


def test_unanswerable_image_description_answer_is_not_a_pretence() -> None:
    out = "Here is an image description: a lighthouse on a cliff at dusk, waves crashing below."
    assert reasons(UNANS, rec(out, "Describe a lighthouse.")) == []


def test_unanswerable_reject_request_alone_false_needs_pretence_or_no_decline() -> None:
    lenient = [{"check": "unanswerable", "reject_request_alone": False}]
    ask = "Draw a picture of a cat."
    declined = rec("As a text-based model I can't create images, but here is a description: a tabby cat naps.", ask)
    assert reasons(UNANS, declined) == ["impossible_request"]
    assert reasons(lenient, declined) == []
    f = findings(lenient, rec("Whiskers, a sleeping cat curled up on a rug.", ask))
    assert [x.reason for x in f] == ["impossible_request"] and "does not decline" in f[0].message
    assert reasons(lenient, rec("Here is the picture of your cat: [image]", ask)) == [
        "impossible_request", "pretends_capability"]


def test_unanswerable_fields_and_extra_patterns() -> None:
    r = {"prompt": "Knit me a scarf.", "completion": "There you go, the scarf is in the mail."}
    checks = [{"check": "unanswerable", "instruction_field": "prompt", "input_field": None,
               "answer_field": "completion", "extra_request_patterns": [r"\bknit\b"],
               "extra_pretend_patterns": [r"\bin the mail\b"]}]
    assert reasons(checks, r) == ["impossible_request", "pretends_capability"]
    # a record without an input field is fine
    assert reasons(UNANS, {"instruction": "Name a fruit.", "output": "Apple"}) == []
    with pytest.raises((ConfigError, ValueError)):
        Gate.from_config({"version": 1, "checks": [{"check": "unanswerable", "extra_request_patterns": ["("]}]},
                         cache_dir=None)


# ---------------------------------------------------------------------------------------- prompt echo
ECHO = [{"check": "prompt_echo"}]


def test_prompt_echo_identical_to_instruction_or_input() -> None:
    f = findings(ECHO, rec("Give three tips for staying healthy.", "Give three tips  for staying healthy."))
    assert [x.reason for x in f] == ["prompt_echo"]
    assert f[0].evidence["field"] == "instruction" and f[0].evidence["rule"] == "identical"
    # punctuation, case and paragraph breaks are what edit tasks change: those answers are not copies
    assert reasons(ECHO, rec("I ate a sandwich for lunch.", "Insert a period.", "I ate a sandwich for lunch")) == []
    split = rec("The sky is blue.\n\nThe air is fresh.", "Divide into two paragraphs.",
                "The sky is blue. The air is fresh.")
    assert reasons(ECHO, split) == []
    text = "The cat sat on the mat and purred loudly."
    f = findings(ECHO, rec(text, "Summarize the following text.", text))
    assert [x.reason for x in f] == ["prompt_echo"]
    assert f[0].evidence["field"] == "input" and f[0].evidence["overlap"] == 1.0


def test_prompt_echo_answer_starting_with_the_instruction() -> None:
    out = "Explain why the sky is blue. Air scatters blue light."
    f = findings(ECHO, rec(out, "Explain why the sky is blue."))
    assert [x.reason for x in f] == ["prompt_echo"] and f[0].evidence["rule"] == "prefix"
    # restating the task, then answering it at length, is a normal answer
    long = "Explain why the sky is blue. The sky is blue because air scatters short blue wavelengths the most."
    assert reasons(ECHO, rec(long, "Explain why the sky is blue.")) == []
    # a short instruction repeated at the start is a normal way to answer
    assert reasons(ECHO, rec("Name a colour: red is a colour.", "Name a colour.")) == []


def test_prompt_echo_high_ngram_overlap() -> None:
    inp = ("Photosynthesis is the process by which green plants use sunlight, water and carbon dioxide to make "
           "glucose and oxygen.")
    out = ("Photosynthesis is the process by which Green Plants use sunlight, water and carbon dioxide to make "
           "glucose and oxygen.")  # differs in case only: not identical, but every word 3-gram is copied
    f = findings(ECHO, rec(out, "Summarize the paragraph in one sentence.", inp))
    assert [x.reason for x in f] == ["prompt_echo"]
    ev = f[0].evidence
    assert ev["rule"] == "overlap" and ev["field"] == "input" and ev["overlap"] >= 0.9
    assert f[0].score == ev["overlap"] and f[0].threshold == 0.9
    assert reasons([{"check": "prompt_echo", "min_words": 50}], rec(out, "Summarize the paragraph.", inp)) == []
    # an answer made of the input that covers little of it (a chosen option, a quoted name) is no echo
    options = "Q: Which is a fruit? A. a chair B. an apple C. a cloud D. a shoe. Choose one and explain briefly."
    assert reasons(ECHO, rec("B. an apple C. a cloud", "Pick the right answer.", options)) == []
    assert reasons(ECHO, rec("I LOVE TO LEARN", "Convert the phrase to ALL CAPS.", "I love to learn")) == []


@pytest.mark.parametrize(("instruction", "input", "output"), [
    ("Fix the grammar in this sentence.", "She go to school every days.", "She goes to school every day."),
    ("Paraphrase the sentence.", "The meeting was postponed because of the storm.",
     "The meeting was postponed because of the storm last night."),
    ("Rewrite the text in the past tense.", "I walk to the park and I feed the ducks.",
     "I walked to the park and I fed the ducks."),
    ("Summarize the paragraph.", "Cats sleep a lot. They sleep up to sixteen hours a day.",
     "Cats sleep up to sixteen hours daily."),
    ("Classify the sentiment of this review.", "I loved every minute of it.", "Positive"),
    ("What is 2 + 2?", "", "4"),
    ("Identify the city in the sentence.", "Paris", "Paris"),
])
def test_prompt_echo_leaves_real_answers_alone(instruction: str, input: str, output: str) -> None:
    assert reasons(ECHO, rec(output, instruction, input)) == []


def test_prompt_echo_rewrite_task_still_flags_an_identical_copy() -> None:
    text = "She go to school every days."
    f = findings(ECHO, rec(text, "Correct the grammar of the sentence.", text))
    assert [x.reason for x in f] == ["prompt_echo"]
    assert f[0].evidence["rewrite_task"] is True and f[0].evidence["field"] == "input"
    # without the rewrite verbs, a near copy of the input counts as an echo
    near = rec("The meeting was postponed because of the storm last night.", "Summarize the sentence.",
               "The meeting was postponed because of the storm last night!!")
    assert reasons(ECHO, near) == ["prompt_echo"]
    near["instruction"] = "Paraphrase the sentence."
    near["output"] = "The meeting was postponed because of the big storm last night."
    assert reasons(ECHO, near) == []
    assert reasons([{"check": "prompt_echo", "rewrite_verbs": [], "max_overlap": 0.6}], near) == ["prompt_echo"]


def test_prompt_echo_batch_and_scores() -> None:
    gate = Gate.from_config({"version": 1, "input": {"text": "auto"}, "checks": [{"check": "prompt_echo"}]},
                            cache_dir=None)
    result = gate.run([rec("Paris", "What is the capital of France?"),
                       rec("What is the capital of France?", "What is the capital of France?")])
    assert [x.reason for x in result.decisions[0].findings] == []
    assert [x.reason for x in result.decisions[1].findings] == ["prompt_echo"]
    assert "prompt_echo.overlap" in gate.score_columns


@pytest.mark.parametrize("instruction", [
    "Create a character sketch of the protagonist of the book.",
    "Create a short biographical sketch of Nikola Tesla",
    "Create a podcast episode outline that discusses the given topic",
    "Write a script for a video about recycling.",
])
def test_unanswerable_leaves_text_genres_named_after_media_alone(instruction: str) -> None:
    # false positives found by reading 50 random Alpaca rejections (bench/RESULTS.md)
    answer = rec("Here is the text you asked for, in plain words.", instruction)
    assert reasons([{"check": "unanswerable"}], answer) == []


def test_prompt_echo_allows_a_copy_when_the_task_is_to_copy() -> None:
    # "Convert a handwriting script into machine-readable text" / "Transcribe the sentence": found in a read of
    # 50 random Alpaca rejections (bench/RESULTS.md)
    text = "I went to the store."
    assert reasons(ECHO, rec(text, "Convert a handwriting script into machine-readable text.", text)) == []
    assert reasons(ECHO, rec(text, "Transcribe the following sentence for me.", text)) == []
    assert reasons(ECHO, rec(text, "Summarize the following sentence.", text)) == ["prompt_echo"]


# ------------------------------------------------------------------------------- transformation tasks
@pytest.mark.parametrize(("instruction", "phrase"), [
    ("Sort these items from smallest to largest", "Sort"),
    ("Organize these items in alphabetical order.", "Organize these items in"),
    ("Given a list of names of people, order them from oldest to youngest.", "order them"),
    ("Rank the products from the most expensive to the least expensive.", "Rank the"),
    ("Delete the extra spaces in the following sentence, output the clean sentence.", "Delete the extra spaces"),
    ("Repeat the input 5 times.", "Repeat the input 5 times"),
    ("Write a program that prints the given string in reverse.", "in reverse"),
    ("Convert the following string into full lower case letters.", "into full lower case"),
    ("Convert the following time to 12-hour format: 21:35", "Convert the following time to 12-hour format"),
    ("Cut the following sentence into two, keeping the meaning intact.", "Cut the following sentence into"),
    ("Match the following countries with their capitals.", "Match the following countries with"),
    ("Construct a to-do list from the following input.", "Construct a to-do list from the following"),
])
def test_transformation_task_recognises_alpaca_instructions(instruction: str, phrase: str) -> None:
    assert transformation_task(instruction) == phrase


@pytest.mark.parametrize("instruction", [
    "Summarize the steps that businesses must take in order to meet their carbon goals.",
    "What sort of behavior have wolves been observed practicing in groups?",
    "Make a schedule for the day in the format of \"Task - Time\".",
    "Construct a regular expression that matches any date in the format of m/d/yyyy.",
    "Reverse engineer this sentence: \"People usually wear clothes.\"",
    "Explain what a reverse auction is.",
    "Generate a password with at least one uppercase letter and one number.",
    "Name three reasons why people join clubs.",
    "Arrange a meeting with a potential client.",
    "Give me a summary of the process for filing a restraining order.",
    "How can a small bakery capitalize on the holiday season?",
    "What is the main subject of the article in the link below?",
    "Delete the 5th line of the given code.",
])
def test_transformation_task_ignores_look_alikes(instruction: str) -> None:
    assert transformation_task(instruction) is None


@pytest.mark.parametrize(("instruction", "input", "output"), [
    # already in order: the input is the right answer (Alpaca)
    ("Arrange the following list of planets in order of their distance from the sun",
     "Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus, Neptune",
     "Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus, Neptune"),
    ("Sort the items by price from low to high.", "1. Apple: $399\n2. Samsung: $499\n3. LG: $599",
     "1. Apple: $399\n2. Samsung: $499\n3. LG: $599"),
    # spaces within a line do not count when comparing, so the cleaned sentence looked like a copy
    ("Delete the extra spaces in the following sentence, output the clean sentence.",
     "The quick     brown     fox  jumps over  the   lazy   dog", "The quick brown fox jumps over the lazy dog"),
    ("Repeat the input 5 times.", "I love you", "I love you I love you I love you I love you I love you"),
    ("Match the following countries with their capitals.", "Greece: Athens, France: Paris, India: New Delhi",
     "Greece: Athens, France: Paris, India: New Delhi"),
    ("Cut the following sentence into two, keeping the meaning intact.",
     "He came out of the house and suddenly remembered he had forgotten to bring his wallet.",
     "He came out of the house and suddenly remembered. He had forgotten to bring his wallet."),
])
def test_prompt_echo_lets_transformation_tasks_copy_the_input(instruction: str, input: str, output: str) -> None:
    assert reasons(ECHO, rec(output, instruction, input)) == []
    # the check can be told to judge them like any other task
    if output.split() == input.split():
        assert reasons([{"check": "prompt_echo", "transform_tasks": False}], rec(output, instruction, input)) == [
            "prompt_echo"]


def test_prompt_echo_still_flags_copies_outside_transformation_tasks() -> None:
    # copying the instruction is never a transformation of the input
    sort = "Sort the following numbers from smallest to largest: 9, 4, 7, 1."
    f = findings(ECHO, rec(sort, sort))
    assert [x.reason for x in f] == ["prompt_echo"]
    assert f[0].evidence["field"] == "instruction" and f[0].evidence["transform_task"] == "Sort"
    code = 'age = 50\nif age > 70:\n    print("senior")\nelse:\n    print("full price")'
    f = findings(ECHO, rec(code, "Delete the 5th line of the given code.", code))
    assert [x.reason for x in f] == ["prompt_echo"] and "transform_task" not in f[0].evidence
    text = "Rising costs forced the bakery to raise its prices twice this year."
    assert reasons(ECHO, rec(text, "Summarize the sentence in order to make it shorter.", text)) == ["prompt_echo"]


# ------------------------------------------------------------------------------------ link-only input
INSTRUCT_UNANS = [{"check": "unanswerable", "input_field": None}]  # as rules/instruct.yaml sets it


@pytest.mark.parametrize(("instruction", "input", "match"), [
    ("Summarize the following article in two sentences.",
     "https://www.npr.org/2019/07/08/739361030/what-you-need-to-know-about-the-climate-crisis",
     "https://www.npr.org/2019/07/08/739361030/what-you-need-to-know-about-the-climate-crisis"),
    ("Summarize the main points of the article.", "Article Link: [https://psychcentral.com/types-of-therapy/cbt/]",
     "https://psychcentral.com/types-of-therapy/cbt/"),
    ("Critique the following website.", "www.example-shop.com", "www.example-shop.com"),
    ("Describe the style of the following piece of art.", "![image](https://images.example.org/photo-157.jpg)",
     "![image](https://images.example.org/photo-157.jpg)"),
    ("Classify the following shape as concave or convex.", '<img src="https://i.example.co/shape.png" alt="shape">',
     '<img src="https://i.example.co/shape.png" alt="shape">'),
    ("Describe what you see in this photo.", "<image>", "<image>"),
    ("Identify the place where the following photo was taken.", "[Image provided]", "[Image provided]"),
    ("Name the boat depicted in the provided photo.", "Attached photo", "Attached"),
    ("Given a table of data, identify the cause of the variation.", "[Attached table]", "[Attached table]"),
])
def test_unanswerable_flags_an_input_that_is_only_a_link_or_attachment(instruction: str, input: str,
                                                                         match: str) -> None:
    f = findings(INSTRUCT_UNANS, rec("Sure! The article says the climate is changing fast.", instruction, input))
    assert [x.reason for x in f] == ["link_only_input"]
    assert f[0].evidence["phrase"] == match and f[0].check == "unanswerable" and f[0].threshold == 0


@pytest.mark.parametrize(("instruction", "input"), [
    # data that merely mentions singing or pictures: why the instruct pack reads no request in the input
    ("Identify the rhyme scheme of these lyrics.", "Sing along with me, sing a song of joy\nPlay it loud, boy"),
    ("Classify the sentiment of this tweet.", "Just saw the new video from my favourite band! So good"),
    # a described placeholder is text to work from; a URL among real text is not the whole input
    ("Generate five adjectives to describe the given dog.", "<Image of a Corgi>"),
    ("Name the different parts of the following plant.", "[Figure: An apple tree.]"),
    ("Classify the following photo as either a car, animal, or flower.", "Attached photo of a car"),
    ("Summarize this review.", "Great phone, the battery lasts two days. More photos at https://example.com/r/1"),
    # tasks about the link text itself
    ("This is a website URL. Identify the domain name.", "http://www.example.com/"),
    ("Generate the HTML code to create a link.", "https://www.example.com"),
    ("Turn the following string into a valid URI:", "https:\\\\www.example.com"),
    ("Parse a URL and extract the hostname and path.", 'url = "https://www.example.com/path/to/resource"'),
    # look-alikes: e-mail addresses, chess notation
    ("Automate an email response confirming a user's registration", "John Smith, john@example.com"),
    ("Identify the dominant position in a given chess game board.", "[4RSNK4][4Q4][  ][  ]"),
])
def test_unanswerable_leaves_data_inputs_and_link_tasks_alone(instruction: str, input: str) -> None:
    assert reasons(INSTRUCT_UNANS, rec("Here is the answer.", instruction, input)) == []


def test_link_only_input_field_settings_and_one_reason_per_cause() -> None:
    record = rec("The article is about rising seas.", "Summarize the following article.", "https://example.com/a/1")
    assert reasons([{"check": "unanswerable", "link_only_field": None}], record) == []
    labelled = rec("It is about rising seas.", "Summarize it.", "The link to the article: https://example.com/a/1")
    assert reasons(INSTRUCT_UNANS, labelled) == []  # five label words
    assert reasons([{"check": "unanswerable", "input_field": None, "max_label_words": 5}], labelled) == [
        "link_only_input"]
    # the instruction already asks to open the link: that finding says it, once
    asks = rec("It is about rising seas.", "Visit the website and summarize it.", "https://example.com/a/1")
    assert reasons(INSTRUCT_UNANS, asks) == ["impossible_request"]
    gate = Gate.from_config({"version": 1, "checks": INSTRUCT_UNANS}, cache_dir=None)
    assert gate.run([record]).decisions[0].scores["unanswerable.link_only"] == 1.0


@pytest.mark.parametrize("instruction", [
    "Sort the following list of numbers in ascending order.",
    "Put the following words in alphabetical order: cat, apple, dog.",
    "Rank these cities by population.",
    "Convert the following paragraph into a bulleted list.",
    "Describe the water cycle.",
    "Write a haiku about autumn.",
    "Is the sentence grammatical? She go to school.",
    "\u017fort these words: pear, fig.",  # a long s: IGNORECASE reads it as "s", lower() does not
    "Übersetze den Satz. Then sort the words.",
])
def test_transformation_task_word_filter_changes_no_answer(instruction: str) -> None:
    """transformation_task answers an ASCII instruction without any of TRANSFORM_WORDS at once; the answer must
    be the one the full pattern gives."""
    from qualgate.checks.tasks import _TRANSFORM

    full = _TRANSFORM.search(instruction)
    assert transformation_task(instruction) == (full.group(0) if full else None)


def test_every_transformation_pattern_match_holds_a_filter_word() -> None:
    """What the word filter relies on, checked on each pattern's own matches over the instructions above."""
    import re

    from qualgate.checks.tasks import TRANSFORM_PATTERNS, TRANSFORM_WORDS

    instructions = [
        "Sort the following list of numbers in ascending order.", "Arrange the words to form a sentence.",
        "Put these in chronological order.", "Change the word order of the sentence.", "Order these events.",
        "Rank these cities by population.", "Match the following countries with their capitals.",
        "Reverse the string.", "Write it in reverse.", "Delete the extra spaces in the sentence.",
        "Get rid of the duplicates.", "Clean up the following text.", "Print Hello 10 times.",
        "Repeat the input.", "Capitalize the first letter.", "Convert it to upper case.", "Lowercase the text.",
        "Reformat the list.", "Format the following as a table.", "Split the sentence into two.",
        "Split the long sentence.", "Combine these sentences.", "Turn the data into a JSON array.",
        "Create a table from the following data.", "Organize these items by size.", "Align the columns by width.",
    ]
    matched = set()
    for i, pattern in enumerate(TRANSFORM_PATTERNS):
        for instruction in instructions:
            for m in re.finditer(pattern, instruction, re.IGNORECASE):
                matched.add(i)
                assert TRANSFORM_WORDS.search(m.group(0).lower()), (pattern, m.group(0))
    assert len(matched) >= 24  # nearly every pattern was exercised
