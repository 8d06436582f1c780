"""The bundled BERT-base-chinese reference: the yardstick every team's size and speed are compared with.

Built from config.json and vocab.txt in this folder (nothing is downloaded). The weights are a seeded
random initialization: parameter count and inference time do not depend on trained values, so the
reference needs no checkpoint, and its predictions are valid in format but not meaningful in content.
fp32, eval mode, inference mode, one task head per task:

- cluewsc2020: sequence classification of the text with the candidate wrapped in _ _ and the pronoun in
  [ ] (the marking of CLUE's WSC baseline; see reference_inputs.mark_wsc_spans).
- csl: sequence classification of the pair (keywords joined by spaces, abstract), as CLUE's CSL baseline.
- cluener2020: token classification over the text split into characters, BIO over the 10 types.
- cmrc2018: start/end span scoring over (question, context) windows of max_seq_length tokens that overlap
  by doc_stride tokens; the best span of at most 30 characters over all windows is the answer.

Batches are padded to max_seq_length (padding="max_length", as CLUE's BERT baselines did) or to the
longest sequence of the batch (padding="longest"), and truncated to max_seq_length.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (BertConfig, BertForQuestionAnswering, BertForSequenceClassification,
                          BertForTokenClassification, BertTokenizerFast)
from transformers.models.bert.tokenization_bert import load_vocab

from reference_inputs import (MAX_ANSWER_CHARS, MAX_QUESTION_TOKENS, NER_LABELS, best_spans, char_labels,
                              decode_bio, mark_wsc_spans)

HERE = Path(__file__).resolve().parent
TASKS = ("cluewsc2020", "csl", "cluener2020", "cmrc2018")
PADDINGS = ("max_length", "longest")
WSC_LABELS = ("false", "true")
CSL_LABELS = ("0", "1")


def build_tokenizer(vocab_path: Path = HERE / "vocab.txt") -> BertTokenizerFast:
    """BERT's WordPiece tokenizer over the given vocabulary, built offline.

    transformers 4 takes the file (`vocab_file=`); transformers 5 silently ignores that argument, falls back
    to a 5-token vocabulary and wants the vocabulary as a dict (`vocab=`). Both are tried, and the size is
    checked, so the reference tokenizes the same way in the runner image and on the host.
    """
    vocab = load_vocab(str(vocab_path))
    try:
        tokenizer = BertTokenizerFast(vocab_file=str(vocab_path))
    except (TypeError, ValueError, OSError):
        tokenizer = None
    if tokenizer is None or len(tokenizer) != len(vocab):
        tokenizer = BertTokenizerFast(vocab=vocab)
    if len(tokenizer) != len(vocab):
        raise RuntimeError(f"tokenizer has {len(tokenizer)} tokens, {vocab_path} has {len(vocab)}")
    return tokenizer


def build_model(task: str, seed: int, config_path: Path = HERE / "config.json") -> torch.nn.Module:
    """BERT-base from its config plus the task's head, with weights drawn from `seed`."""
    config = BertConfig.from_json_file(str(config_path))
    torch.manual_seed(seed)
    if task == "cluener2020":
        config.num_labels = len(NER_LABELS)
        return BertForTokenClassification(config)
    if task == "cmrc2018":
        return BertForQuestionAnswering(config)
    config.num_labels = 2
    return BertForSequenceClassification(config)


class Predictor:
    """The predictor protocol for the reference: Predictor(task, device, **options); predict(examples)."""

    def __init__(self, task: str, device: str = "cpu", max_seq_length: int = 128,
                 padding: str = "max_length", doc_stride: int = 128, seed: int = 2020):
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, not {padding!r}")
        if not 8 <= max_seq_length <= 512:
            raise ValueError(f"max_seq_length must be within 8..512 (BERT's positions), not {max_seq_length}")
        self.task, self.device = task, torch.device(device)
        self.max_seq_length, self.padding, self.doc_stride = max_seq_length, padding, doc_stride
        self.tokenizer = build_tokenizer()
        self.model = build_model(task, seed).to(self.device).eval()

    def parameter_sources(self) -> list[torch.nn.Module]:
        return [self.model]

    def predict(self, examples: list[dict]) -> list[dict]:
        if not examples:
            return []
        with torch.inference_mode():
            if self.task == "cluewsc2020":
                texts = [mark_wsc_spans(e["text"], e.get("target") or {}) for e in examples]
                return [{"id": e["id"], "label": WSC_LABELS[c]} for e, c in zip(examples, self._classify(texts))]
            if self.task == "csl":
                keywords = [" ".join(e["keyword"]) for e in examples]
                classes = self._classify(keywords, [e["abst"] for e in examples])
                return [{"id": e["id"], "label": CSL_LABELS[c]} for e, c in zip(examples, classes)]
            if self.task == "cluener2020":
                return [{"id": e["id"], "label": label} for e, label in zip(examples, self._tag(examples))]
            return [{"id": e["id"], "answer": answer} for e, answer in zip(examples, self._answer(examples))]

    def _encode(self, first, second=None, truncation: bool | str = True, **extra):
        """Tokenized batch as tensors, truncated to max_seq_length and padded as configured."""
        return self.tokenizer(first, second, truncation=truncation, max_length=self.max_seq_length,
                              padding=self.padding, return_tensors="pt", **extra)

    def _classify(self, first: list[str], second: list[str] | None = None) -> list[int]:
        inputs = self._encode(first, second).to(self.device)
        return self.model(**inputs).logits.argmax(-1).tolist()

    def _tag(self, examples: list[dict]) -> list[dict]:
        texts = [e["text"] for e in examples]
        inputs = self._encode([list(text) for text in texts], is_split_into_words=True)
        tags = self.model(**inputs.to(self.device)).logits.argmax(-1).tolist()
        return [decode_bio(text, char_labels(inputs.word_ids(b), tags[b], len(text)))
                for b, text in enumerate(texts)]

    def _answer(self, examples: list[dict]) -> list[str]:
        questions, longest = self._clip_questions([e["question"] for e in examples])
        contexts = [e["context"] for e in examples]
        # Room for context tokens beside the longest question and [CLS] [SEP] [SEP]; the overlap between
        # windows is at most half of it, so that windows always advance (and the tokenizer accepts it).
        stride = max(0, min(self.doc_stride, (self.max_seq_length - longest - 3) // 2))
        inputs = self._encode(questions, contexts, truncation="only_second", stride=stride,
                              return_overflowing_tokens=True, return_offsets_mapping=True)
        window_example = inputs.pop("overflow_to_sample_mapping").tolist()
        offsets = inputs.pop("offset_mapping")
        in_context = torch.tensor([[s == 1 for s in inputs.sequence_ids(w)] for w in range(len(window_example))])
        outputs = self.model(**inputs.to(self.device))
        scores, starts, ends = (t.tolist() for t in best_spans(
            outputs.start_logits, outputs.end_logits, in_context.to(self.device), offsets.to(self.device),
            MAX_ANSWER_CHARS))
        best: dict[int, tuple[float, int]] = {}  # example -> (score, window)
        for window, example in enumerate(window_example):
            if scores[window] > best.get(example, (float("-inf"), -1))[0]:
                best[example] = (scores[window], window)
        answers = []
        for example, context in enumerate(contexts):
            if example not in best:
                answers.append("")
                continue
            window = best[example][1]
            begin, end = offsets[window, starts[window], 0].item(), offsets[window, ends[window], 1].item()
            answers.append(context[begin:end])
        return answers

    def _clip_questions(self, questions: list[str]) -> tuple[list[str], int]:
        """Questions cut to MAX_QUESTION_TOKENS tokens and to half the window, so that context always fits;
        and the longest one's length in tokens."""
        limit = min(MAX_QUESTION_TOKENS, self.max_seq_length // 2)
        tokens = self.tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        clipped = [q if len(spans) <= limit else q[:spans[limit - 1][1]] for q, spans in zip(questions, tokens)]
        return clipped, min(limit, max(len(spans) for spans in tokens))
