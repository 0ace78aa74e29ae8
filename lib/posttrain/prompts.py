"""Prompt texts, as data: the SFT datasets' own prompts and the benchmarks' zero-shot templates.

SFT rows are rendered with the prompt their dataset was built with (OpenMathReasoning: NeMo-Skills `generic/math`;
OpenCodeReasoning-II: `python_codegen_reasoning`), evaluation with the paper's zero-shot templates. Both go through
the chat template of the model under test (posttrain.generation renders them). Texts from
../shared/reference/anchors.md §3.
"""
from __future__ import annotations

# --- SFT (the datasets' generation prompts) -------------------------------------------------------------------
OMR_MATH_PROMPT = ("Solve the following math problem. Make sure to put the answer (and only answer) inside "
                   "\\boxed{{}}.\n\n{problem}")
OCR_CODE_PROMPT = ("You are a helpful and harmless assistant. You should think step-by-step before responding to the "
                   "instruction below.\n\nPlease use {language} programming language only.\n\nYou must use "
                   "```{fence} for just the final solution code block with the following format:\n```{fence}\n"
                   "# Your code here\n```\n\n{question}")


def math_sft_messages(problem: str, solution: str) -> list[dict]:
    """A math SFT example as chat messages, in OpenMathReasoning's prompt."""
    return [{"role": "user", "content": OMR_MATH_PROMPT.format(problem=problem)},
            {"role": "assistant", "content": solution}]


def question_with_starter(question: str, starter_code: str = "") -> str:
    """A code question with its starter code appended (how OCR-style prompts carry LeetCode signatures)."""
    if not starter_code.strip():
        return question
    return f"{question}\n\nUse this starter code:\n```python\n{starter_code.rstrip()}\n```"


def code_sft_messages(question: str, solution: str, language: str = "python") -> list[dict]:
    """A code SFT example as chat messages, in OpenCodeReasoning-II's prompt."""
    fence = {"python": "python", "cpp": "cpp", "c++": "cpp"}[language.lower()]
    pretty = {"python": "python", "cpp": "C++", "c++": "C++"}[language.lower()]
    return [{"role": "user", "content": OCR_CODE_PROMPT.format(language=pretty, fence=fence, question=question)},
            {"role": "assistant", "content": solution}]


# --- Evaluation (zero-shot) ---------------------------------------------------------------------------------
MATH_EVAL_PROMPTS = {
    # Qwen2.5-Math "qwen-boxed" style: the instruction follows the problem in the user turn.
    "boxed": "{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}.",
    # OpenMathReasoning's own SFT prompt: evaluates a model in the format it was trained on (the miniature uses it:
    # a 1M-parameter model does not generalize across instruction wordings; anchors §6.6 on this mismatch).
    "omr": OMR_MATH_PROMPT,
}
LCB_SYSTEM = ("You are an expert Python programmer. You will be given a question (problem specification) and will "
              "generate a correct Python program that matches the specification and passes all tests.")
LCB_WITH_STARTER = ("You will use the following starter code to write the solution to the problem and enclose your "
                    "code within delimiters.")
LCB_WITHOUT_STARTER = ("Read the inputs from stdin solve the problem and write the answer to stdout (do not directly "
                       "test on the sample inputs). Enclose your code within delimiters as follows. Ensure that when "
                       "the python program runs, it reads the inputs, runs the algorithm and writes output to STDOUT.")
CODE_EVAL_PROMPTS = {
    # LiveCodeBench's generic chat format, with and without starter code.
    "lcb": {
        "with_starter": ("### Question:\n{question}\n\n### Format: " + LCB_WITH_STARTER +
                         "\n```python\n{starter_code}\n```\n\n### Answer: (use the provided format with backticks)\n\n"),
        "without_starter": ("### Question:\n{question}\n\n### Format: " + LCB_WITHOUT_STARTER +
                            "\n```python\n# YOUR CODE HERE\n```\n\n### Answer: (use the provided format with "
                            "backticks)\n\n"),
    },
}


def _check_template(name: str, known: dict) -> None:
    if name not in known:
        raise ValueError(f"evaluate.prompts: unknown template {name!r}; known: {sorted(known)}")


def math_eval_messages(problem: str, template: str = "boxed") -> list[dict]:
    _check_template(template, MATH_EVAL_PROMPTS)
    return [{"role": "user", "content": MATH_EVAL_PROMPTS[template].format(problem=problem)}]


def code_eval_messages(question: str, starter_code: str = "", template: str = "lcb",
                       system: bool = False) -> list[dict]:
    """LCB prompt; `system=True` adds LCB's system message (off by default: our SFT data has no system turn).

    template "ocr" is OpenCodeReasoning-II's SFT prompt, with the starter code appended to the question."""
    if template == "ocr":
        return code_sft_messages(question_with_starter(question, starter_code), "")[:1]
    _check_template(template, CODE_EVAL_PROMPTS)
    t = CODE_EVAL_PROMPTS[template]
    user = (t["with_starter"].format(question=question, starter_code=starter_code) if starter_code.strip()
            else t["without_starter"].format(question=question))
    return ([{"role": "system", "content": LCB_SYSTEM}] if system else []) + [{"role": "user", "content": user}]
