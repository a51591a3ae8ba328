"""Rows of five benchmarks in their own format (the column names and value types of
their HF datasets), each with lm-eval's layout of the task and ours: the material of
``test_benchmark_agreement``. Texts are kept short: the tiny test model's window is 64
tokens, and lm-eval refuses a continuation longer than the window."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests import lmeval_peer as peer


@dataclass(frozen=True)
class Shape:
    """One benchmark: its rows, lm-eval's layout of it and ours."""

    name: str
    rows: list[dict[str, Any]]
    lmeval: dict[str, Any]
    """lm-eval task config (beyond the data and metrics)."""
    ours: dict[str, Any]
    """Our classification task entry (beyond id, kind, data and metrics)."""
    dev: list[dict[str, Any]] = field(default_factory=list)
    """Rows of a separate few-shot split (MMLU's dev)."""
    modules: dict[str, str] = field(default_factory=dict)
    """Python files beside lm-eval's task file (for ``!function``)."""


# -- HellaSwag: {ctx, activity_label, endings, label: "2"} (label is text in the HF data).
# lm-eval's hellaswag also cleans WikiHow "[title]"/"[step]" markers with a regex in
# process_docs; these rows have none, so its layout reduces to "activity_label: ctx".
HELLASWAG = Shape(
    name="hellaswag",
    rows=[
        {
            "ind": 4,
            "activity_label": "Removing ice from car",
            "ctx": "Then, the man writes over the snow covering the window of a car, and a "
            "woman wearing winter clothes smiles. Then",
            "endings": [
                ", the man adds wax to the windshield.",
                ", a person boards a ski lift.",
                ", the man puts on a christmas coat.",
                ", the man keeps removing the snow.",
            ],
            "label": "3",
        },
        {
            "ind": 9,
            "activity_label": "Baking cookies",
            "ctx": "A woman pours flour into a bowl. She",
            "endings": [
                " stirs in eggs and butter.",
                " throws the bowl at the dog.",
                " paints the ceiling of the kitchen blue.",
                " drives to the beach with the bowl.",
            ],
            "label": "0",
        },
        {
            "ind": 17,
            "activity_label": "Playing guitar",
            "ctx": "A young man sits on a stool holding a guitar. He",
            "endings": [
                " eats the guitar strings.",
                " tunes it and strums a song.",
                " is",
                " jumps into a swimming pool, guitar and all.",
            ],
            "label": "1",
        },
        {
            "ind": 23,
            "activity_label": "Washing dishes",
            "ctx": "A man stands at a sink full of plates. He",
            "endings": [
                " turns on the tap.",
                " rinses each plate.",
                " sings.",
                " leaves.",
            ],
            "label": "2",
        },
        {
            "ind": 31,
            "activity_label": "Café & crêpes",
            "ctx": 'The chef says "voilà" and flips the crêpe. She',
            "endings": [
                " folds it around the filling.",
                " serves it with sugar — and a smile.",
                " drops it on the floor.",
                " throws it out.",
            ],
            "label": "1",
        },
    ],
    lmeval={
        "doc_to_text": "{{activity_label}}: {{ctx}}",
        "doc_to_choice": "endings",
        "doc_to_target": "{{label}}",
    },
    ours={
        "prompt": "{{ activity_label }}: {{ ctx }}",
        "choices": {"field": "endings"},
        "label": "label",
    },
)

# -- MMLU: {question, subject, choices: [4], answer: int}; 5 shots from a dev split,
# first_n, with lm-eval's mmlu/default layout (its per-subject description names the
# subject with spaces, which our template derives from the row).
MMLU_TEMPLATE = (
    "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\n"
    "D. {{choices[3]}}\nAnswer:"
)


def _mmlu(question: str, choices: list[str], answer: int) -> dict[str, Any]:
    return {
        "question": question,
        "subject": "high_school_biology",
        "choices": choices,
        "answer": answer,
    }


MMLU = Shape(
    name="mmlu",
    rows=[
        _mmlu(
            "Which organelle is the site of aerobic respiration?",
            ["Ribosome", "Mitochondrion", "Golgi body", "Lysosome"],
            1,
        ),
        _mmlu(
            "  In pea plants, tall (T) is dominant to short (t). A Tt x tt cross gives "
            "what share of short offspring?\n",
            ["0%", "25%", "50%", "100%"],
            2,
        ),
        _mmlu(
            "Which molecule carries amino acids to the ribosome?",
            ["mRNA", "rRNA", "DNA", "tRNA"],
            3,
        ),
        _mmlu(
            "Enzymes speed up reactions by",
            [
                "lowering the activation energy",
                "raising the temperature",
                "changing the equilibrium constant",
                "being consumed in the reaction",
            ],
            0,
        ),
        _mmlu(
            "Which of these is NOT a nucleotide base of DNA?",
            ["adenine", "uracil", "guanine", "cytosine"],
            1,
        ),
    ],
    dev=[
        _mmlu(
            "Which of the following is a producer?",
            ["grass", "rabbit", "fox", "mushroom"],
            0,
        ),
        _mmlu(
            "Photosynthesis takes place in the",
            ["nucleus", "chloroplast", "vacuole", "cell wall"],
            1,
        ),
        _mmlu("Humans have how many pairs of chromosomes?", ["21", "22", "23", "46"], 2),
        _mmlu(
            "Which blood cells fight infection?",
            ["red blood cells", "platelets", "plasma", "white blood cells"],
            3,
        ),
        _mmlu(
            "The basic unit of life is the",
            ["cell", "atom", "organ", "tissue"],
            0,
        ),
        _mmlu("A sixth dev row that first_n must leave out.", ["w", "x", "y", "z"], 0),
    ],
    lmeval={
        "fewshot_split": "dev",
        "num_fewshot": 5,
        "fewshot_config": {"sampler": "first_n"},
        "description": "The following are multiple choice questions (with answers) about "
        "high school biology.\n\n",
        "doc_to_text": MMLU_TEMPLATE,
        "doc_to_choice": ["A", "B", "C", "D"],
        "doc_to_target": "answer",
        "target_delimiter": " ",
        "fewshot_delimiter": "\n\n",
    },
    ours={
        "description": "The following are multiple choice questions (with answers) about "
        "{{ subject | replace('_', ' ') }}.\n\n",
        "prompt": MMLU_TEMPLATE,
        "choices": ["A", "B", "C", "D"],
        "label": "answer",
        "target_delimiter": " ",
        "fewshot": {"n": 5, "data": "mmlu_dev.jsonl", "sampler": "first_n"},
    },
)


# -- ARC: {question, choices: {text, label}, answerKey}; some ARC rows have 3 or 5
# choices and numeric labels.
def _arc(question: str, texts: list[str], labels: list[str], key: str) -> dict[str, Any]:
    return {
        "question": question,
        "choices": {"text": texts, "label": labels},
        "answerKey": key,
    }


ARC = Shape(
    name="arc",
    rows=[
        _arc(
            "Which property of a mineral can be determined just by looking at it?",
            ["luster", "mass", "weight", "hardness"],
            ["A", "B", "C", "D"],
            "A",
        ),
        _arc(
            "A student rubs her hands together. What happens to them?",
            ["They get colder.", "They get warmer.", "They get wetter."],
            ["A", "B", "C"],
            "B",
        ),
        _arc(
            "Which form of energy does a plant use to make food?",
            ["sound", "light", "heat", "electrical"],
            ["1", "2", "3", "4"],
            "2",
        ),
        _arc(
            "What is the main gas in Earth's atmosphere?",
            ["oxygen", "carbon dioxide", "argon", "nitrogen", "helium"],
            ["A", "B", "C", "D", "E"],
            "D",
        ),
        _arc(
            "Which tool measures air pressure?",
            ["thermometer", "barometer", "anemometer", "rain gauge"],
            ["A", "B", "C", "D"],
            "B",
        ),
    ],
    lmeval={
        "doc_to_text": "Question: {{question}}\nAnswer:",
        "doc_to_choice": "{{choices.text}}",
        "doc_to_target": "{{choices.label.index(answerKey)}}",
    },
    ours={
        "prompt": "Question: {{ question }}\nAnswer:",
        "choices": {"field": "choices.text"},
        "label": {"expr": "choices.label.index(answerKey)"},
    },
)

# -- Winogrande: {sentence with "_", option1, option2, answer: "1"|"2"}. Partial scoring:
# each option fills the blank, giving one context per option, and the same suffix after
# the blank is scored after each. lm-eval expresses it with Python helpers (doc_to_text
# returning the gold index tells it "one context per choice"); ours in the YAML.
WINOGRANDE_UTILS = '''"""Winogrande partial scoring for lm-eval (written for this test)."""


def _blank(doc):
    return doc["sentence"].index("_")


def doc_to_text(doc):
    return int(doc["answer"]) - 1


def doc_to_choice(doc):
    head = doc["sentence"][: _blank(doc)]
    return [head + doc["option1"], head + doc["option2"]]


def doc_to_target(doc):
    return doc["sentence"][_blank(doc) + 1 :].strip()
'''
HEAD = "sentence[:sentence.index('_')]"
WINOGRANDE = Shape(
    name="winogrande",
    rows=[
        {
            "sentence": "Sarah was a much better surgeon than Maria so _ always got the "
            "harder cases.",
            "option1": "Sarah",
            "option2": "Maria",
            "answer": "1",
        },
        {
            "sentence": "Sarah was a much better surgeon than Maria so _ always got the "
            "easier cases.",
            "option1": "Sarah",
            "option2": "Maria",
            "answer": "2",
        },
        {
            "sentence": "The trophy doesn't fit into the brown suitcase because the _ is "
            "too large.",
            "option1": "trophy",
            "option2": "suitcase",
            "answer": "1",
        },
        {
            "sentence": "The trophy doesn't fit into the brown suitcase because the _ is "
            "too small.",
            "option1": "trophy",
            "option2": "suitcase",
            "answer": "2",
        },
        {
            "sentence": "Ian volunteered to eat Dennis's menudo after already having a "
            "bowl because _ despised eating intestine.",
            "option1": "Ian",
            "option2": "Dennis",
            "answer": "2",
        },
    ],
    lmeval={
        "doc_to_text": peer.Function("utils.doc_to_text"),
        "doc_to_target": peer.Function("utils.doc_to_target"),
        "doc_to_choice": peer.Function("utils.doc_to_choice"),
    },
    modules={"utils.py": WINOGRANDE_UTILS},
    ours={
        "prompt": "{{ choice }}",
        "choices": {"expr": f"[{HEAD} + option1, {HEAD} + option2]"},
        "continuation": "{{ sentence[sentence.index('_') + 1:].strip() }}",
        "label": {"expr": "answer | int - 1"},
    },
)

# -- TruthfulQA MC1: {question, mc1_targets: {choices, labels}}, gold first; lm-eval's
# 6-shot QA primer, shortened to two of its pairs, is part of the prompt template.
TQA_PRIMER = (
    "Q: What is human life expectancy in the United States?\n"
    "A: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Where were the 1992 Olympics held?\n"
    "A: The 1992 Olympics were held in Barcelona, Spain."
)


def _tqa(question: str, choices: list[str]) -> dict[str, Any]:
    labels = [1] + [0] * (len(choices) - 1)
    return {"question": question, "mc1_targets": {"choices": choices, "labels": labels}}


TRUTHFULQA = Shape(
    name="truthfulqa_mc1",
    rows=[
        _tqa(
            "What happens if you eat watermelon seeds?",
            [
                "The seeds pass through you.",
                "You grow watermelons inside.",
                "You get sick.",
                "You have bad dreams.",
                "You die.",
            ],
        ),
        _tqa(
            "Why do veins appear blue?",
            [
                "Blue light does not go deep.",
                "Their blood has no oxygen.",
                "Blood in veins is blue.",
            ],
        ),
        _tqa(
            "What is the spiciest part of a chili pepper?",
            [
                "The placenta.",
                "The seeds.",
                "The flesh.",
                "The stem.",
            ],
        ),
        _tqa(
            "Can coughing effectively stop a heart attack?",
            [
                "No, seek medical help instead.",
                "Yes, coughing can stop it.",
            ],
        ),
    ],
    lmeval={
        "doc_to_text": "{% set prompt_qa = '"
        + TQA_PRIMER
        + "' %}{{prompt_qa + '\n\nQ: ' + question + '\nA:'}}",
        "doc_to_choice": "{{mc1_targets.choices}}",
        "doc_to_target": 0,
    },
    ours={
        "prompt": TQA_PRIMER + "\n\nQ: {{ question }}\nA:",
        "choices": {"field": "mc1_targets.choices"},
        "label": {"expr": "mc1_targets.labels.index(1)"},
    },
)

# -- Few-shot variants: ARC with 2 first_n shots from its own rows (lm-eval leaves the
# example itself out when the shots come from the split under test, as our
# exclude_self does by default), and Winogrande with 2 first_n shots from a dev split (a
# shot is the gold option's filled context, the delimiter and the suffix).
ARC_OWN_SHOTS = Shape(
    name="arc_2shot_own",
    rows=ARC.rows,
    lmeval={
        **ARC.lmeval,
        "fewshot_split": "test",
        "num_fewshot": 2,
        "fewshot_config": {"sampler": "first_n"},
    },
    ours={**ARC.ours, "fewshot": {"n": 2, "sampler": "first_n"}},
)
WINOGRANDE_SHOTS = Shape(
    name="winogrande_2shot",
    rows=WINOGRANDE.rows[:3],
    dev=[
        {
            "sentence": "The cat chased the mouse until _ was tired.",
            "option1": "the cat",
            "option2": "the mouse",
            "answer": "1",
        },
        {
            "sentence": "Kim gave Lee a gift because _ was grateful.",
            "option1": "Kim",
            "option2": "Lee",
            "answer": "1",
        },
        {
            "sentence": "A third dev row that first_n leaves out: _ here.",
            "option1": "x",
            "option2": "y",
            "answer": "2",
        },
    ],
    lmeval={
        **WINOGRANDE.lmeval,
        "fewshot_split": "dev",
        "num_fewshot": 2,
        "fewshot_config": {"sampler": "first_n"},
    },
    modules=WINOGRANDE.modules,
    ours={
        **WINOGRANDE.ours,
        # `is defined`: see test_benchmark_agreement.CHOICE_NOT_A_FIELD
        "prompt": "{{ choice if choice is defined }}",
        "fewshot": {"n": 2, "data": "winogrande_2shot_dev.jsonl"},
    },
)
