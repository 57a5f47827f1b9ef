"""Each reward-model format read the way its model card does, with plain transformers and torch.

Written from the cards (not from rewards/): the input string is built by hand, tokenized
whole as the card does, the model's forward is run, and the card's softmax / sigmoid is taken
at the card's positions. Tests compare Branchwise's scores with these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

QUESTION = "Mia has 7 pens. She gets 15 more. She loses 4. She triples them. How many pens now?"
QWEN_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
PATHS: list[tuple[str, ...]] = [
    ("Step 1: 7 + 15 = 22 pens.\n\n", "Step 2: 22 - 4 = 18 pens.\n\n", "So 18 * 3 = 54.\n\n",
     "The answer is \\boxed{54}."),
    ("Step 1: 7 + 15 = 22 pens.\n\n", "Step 2: 22 - 4 = 17 pens.\n\n"),
    ("First, 3 + 4 = 7.",),
]  # fmt: skip


def _head(folder: Path, *names: str) -> list[Any]:
    """Linear layers named as in the checkpoint, loaded from its safetensors."""
    import torch
    from safetensors.torch import load_file

    state = load_file(str(folder / "model.safetensors"))
    layers = []
    for name in names:
        weight = state[f"{name}.weight"]
        layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=f"{name}.bias" in state)
        layer.load_state_dict(
            {k.split(".")[-1]: v for k, v in state.items() if k.startswith(name + ".")}
        )
        layers.append(layer)
    return layers


def _hidden(folder: Path, ids: Any) -> Any:
    from transformers import AutoModel

    return AutoModel.from_pretrained(folder).eval()(input_ids=ids).last_hidden_state[0]


def qwen_prm(folder: Path, question: str, steps: tuple[str, ...]) -> list[float]:
    """Qwen2.5-Math-PRM card: ``make_step_rewards`` on the chat with ``<extra_0>`` after steps."""
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    messages = [
        {"role": "system", "content": QWEN_SYSTEM},
        {"role": "user", "content": question},
        {"role": "assistant", "content": "<extra_0>".join(s.strip() for s in steps) + "<extra_0>"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    ids = tokenizer.encode(text, return_tensors="pt")
    first, second = _head(folder, "score.0", "score.2")
    with torch.no_grad():
        logits = second(torch.relu(first(_hidden(folder, ids))))
    probs = logits.softmax(-1)
    mask = ids[0] == tokenizer.encode("<extra_0>")[0]
    return [float(p) for p in probs[mask][:, 1]]


def _causal_logits(folder: Path, ids: Any) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    with torch.no_grad():
        return AutoModelForCausalLM.from_pretrained(folder).eval()(ids).logits[0]


def shepherd(folder: Path, question: str, steps: tuple[str, ...]) -> list[float]:
    """Math-Shepherd card: ``f"{question} {output}"``, softmax over ``+``/``-`` at each tag."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    candidate_tokens = [tokenizer.encode(t, add_special_tokens=False)[-1] for t in ("+", "-")]
    step_tag_id = tokenizer.encode(" ки", add_special_tokens=False)[-1]
    output = "\n".join(s.strip() + " ки" for s in steps)
    ids = tokenizer.encode(f"{question} {output}", return_tensors="pt")
    scores = _causal_logits(folder, ids)[:, candidate_tokens].softmax(-1)[:, 0]
    return [float(s) for s in scores[ids[0] == step_tag_id]]


def rlhflow(folder: Path, question: str, steps: tuple[str, ...]) -> list[float]:
    """RLHFlow PRM card: one chat per step prefix, P(+) from logits[-3] (Llama 3.1)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    candidate_tokens = [tokenizer.encode("+")[-1], tokenizer.encode("-")[-1]]
    conversation: list[dict[str, str]] = []
    out = []
    for k, step in enumerate(s.strip() for s in steps):
        text = question + " " + step if k == 0 else step
        conversation += [{"role": "user", "content": text}, {"role": "assistant", "content": "+"}]
        ids = tokenizer.apply_chat_template(conversation, return_tensors="pt", return_dict=False)
        logits = _causal_logits(folder, ids)[-3, candidate_tokens]
        out.append(float(logits.softmax(-1)[0]))
    return out


def value_head(folder: Path, question: str, steps: tuple[str, ...]) -> list[float]:
    """Skywork-o1-Open-PRM ``prepare_input``: bos + problem + "\\n", steps + step token ids."""
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    step_token = "\n"
    ids = tokenizer.encode(tokenizer.bos_token + question + "\n")
    flags = [0] * len(ids)
    step_token_id = tokenizer.encode(step_token)[-1]
    response = step_token.join(s.strip() for s in steps)
    for step in response.split(step_token):
        if step != "":
            step_ids = [*tokenizer.encode(step), step_token_id]
            ids += step_ids
            flags += [0] * (len(step_ids) - 1) + [1]
    (v_head,) = _head(folder, "v_head.summary")
    with torch.no_grad():
        rewards = torch.sigmoid(v_head(_hidden(folder, torch.tensor([ids])))).squeeze(-1)
    return [float(r) for r, f in zip(rewards, flags, strict=True) if f]


def token_classify(folder: Path, prompt: str, steps: tuple[str, ...]) -> list[float]:
    """The testbed PRM: prompt + steps, softmax(2)[1] at each step's last token."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoded = tokenizer(prompt + "".join(steps), return_offsets_mapping=True)
    ends, at = [], len(prompt)
    for step in steps:
        at += len(step)
        ends.append(next(i for i, (_, e) in enumerate(encoded["offset_mapping"]) if e == at))
    model = AutoModelForTokenClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        probs = model(input_ids=torch.tensor([encoded["input_ids"]])).logits[0].softmax(-1)
    return [float(probs[e, 1]) for e in ends]


def sequence_classify(folder: Path, question: str, steps: tuple[str, ...]) -> float:
    """Skywork-Reward card: the chat (user, assistant), ``logits[0][0]`` raw."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    conv = [
        {"role": "user", "content": question},
        {"role": "assistant", "content": "".join(steps).strip()},
    ]
    formatted = tokenizer.apply_chat_template(conv, tokenize=False)
    if tokenizer.bos_token is not None and formatted.startswith(tokenizer.bos_token):
        formatted = formatted[len(tokenizer.bos_token) :]
    inputs = tokenizer(formatted, return_tensors="pt")
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        return float(model(**inputs).logits[0][0])
