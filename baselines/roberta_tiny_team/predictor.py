"""An example finalist: a RoBERTa-tiny-CLUE-size BERT (4 layers, hidden 312, 12 heads, FFN 1248) per task.

A template for participants and a realistic load for the harness: the shape of RoBERTa-tiny-CLUE (the
config in config.json, a copy of CLUE's roberta_tiny_clue_config.json), an 8,021-token WordPiece vocabulary
(vocab.txt, cut from BERT-base-chinese's by make_vocab.py, since the real file is not bundled), and the
CLUE baselines' way of feeding it: BERT's fast tokenizer, inputs padded to the task's sequence length.
The weights are a seeded random initialization (no download, as the reference): its parameter count and
speed are those of the real model, its predictions are valid in format and near chance in content.

Parameters (transformers' own count): the encoder with pooler is 7,449,936; the classification tasks add
626 (312 x 2 + 2); token classification and QA drop the pooler (97,656) and add their heads
(312 x 21 + 21 = 6,573 for NER, 312 x 2 + 2 = 626 for QA).

Per task, as CLUE's BERT baselines (and the bundled reference) do it:
- cluewsc2020 (128 tokens): the text with the candidate in _ _ and the pronoun in [ ], 2-way classification.
- csl (256): the pair (keywords joined by spaces, abstract), 2-way classification.
- cluener2020 (64): the text split into characters, BIO over the 10 types.
- cmrc2018 (512): (question, context) windows overlapping by 128 tokens, best span of <= 30 characters.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (BertConfig, BertForQuestionAnswering, BertForSequenceClassification,
                          BertForTokenClassification, BertTokenizerFast)
from transformers.models.bert.tokenization_bert import load_vocab

from task_inputs import (MAX_ANSWER_CHARS, MAX_QUESTION_TOKENS, NER_LABELS, best_spans, char_labels,
                         decode_bio, mark_wsc_spans)

HERE = Path(__file__).resolve().parent
# The spec's (and CLUE's baselines') maximum sequence length per task.
MAX_SEQ_LENGTH = {"cluewsc2020": 128, "csl": 256, "cluener2020": 64, "cmrc2018": 512}
WSC_LABELS = ("false", "true")
CSL_LABELS = ("0", "1")


def build_tokenizer(vocab_path: Path = HERE / "vocab.txt") -> BertTokenizerFast:
    """BERT's fast WordPiece tokenizer over vocab.txt, offline, in transformers 4 and 5 alike.

    transformers 4 takes the file (`vocab_file=`); transformers 5 ignores it and wants the dict (`vocab=`).
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


def build_model(task: str, seed: int = 2020, config_path: Path = HERE / "config.json") -> torch.nn.Module:
    """The encoder from config.json plus the task's head, weights drawn from `seed`."""
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
    """Predictor(task, device); predict(examples) -> one prediction per example, in the official format."""

    def __init__(self, task: str, device: str = "cpu", padding: str = "max_length", doc_stride: int = 128,
                 seed: int = 2020):
        if task not in MAX_SEQ_LENGTH:
            raise ValueError(f"unknown task {task!r}; expected one of {', '.join(MAX_SEQ_LENGTH)}")
        self.task, self.device = task, torch.device(device)
        self.max_seq_length, self.padding, self.doc_stride = MAX_SEQ_LENGTH[task], padding, doc_stride
        self.tokenizer = build_tokenizer()
        self.model = build_model(task, seed).to(self.device).eval()

    def parameter_sources(self) -> list[torch.nn.Module]:
        return [self.model]

    def predict(self, examples: list[dict]) -> list[dict]:
        if not examples:
            return []
        with torch.inference_mode():
            return self.decode(examples, self.forward(self.encode(examples)))

    # predict() in three steps, so that bench/example_teams.py can time the host and the model apart.

    def encode(self, examples: list[dict]):
        """Host side: tokenized model inputs (on the device) and what decoding needs."""
        if self.task == "cluewsc2020":
            return self._tokenize([mark_wsc_spans(e["text"], e.get("target") or {}) for e in examples]), None
        if self.task == "csl":
            return self._tokenize([" ".join(e["keyword"]) for e in examples], [e["abst"] for e in examples]), None
        if self.task == "cluener2020":
            batch = self._tokenize([list(e["text"]) for e in examples], is_split_into_words=True)
            return batch, [batch.word_ids(b) for b in range(len(examples))]
        questions, longest = self._clip_questions([e["question"] for e in examples])
        # Room for context tokens beside the longest question and [CLS] [SEP] [SEP]; windows always advance.
        stride = max(0, min(self.doc_stride, (self.max_seq_length - longest - 3) // 2))
        batch = self._tokenize(questions, [e["context"] for e in examples], truncation="only_second",
                               stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True)
        window_example = batch.pop("overflow_to_sample_mapping").tolist()
        offsets = batch.pop("offset_mapping")
        in_context = torch.tensor([[s == 1 for s in batch.sequence_ids(w)] for w in range(len(window_example))])
        return batch, (window_example, offsets, in_context.to(self.device), offsets.to(self.device))

    def forward(self, encoded):
        """Device side: the model on the tokenized batch."""
        batch, extra = encoded
        outputs = self.model(**batch)
        if self.task == "cmrc2018":
            _, _, in_context, device_offsets = extra
            spans = best_spans(outputs.start_logits, outputs.end_logits, in_context, device_offsets,
                               MAX_ANSWER_CHARS)
            return [t.tolist() for t in spans], extra
        return outputs.logits.argmax(-1).tolist(), extra

    def decode(self, examples: list[dict], forwarded) -> list[dict]:
        """Host side: model outputs -> predictions in the task's official format."""
        result, extra = forwarded
        if self.task == "cluewsc2020":
            return [{"id": e["id"], "label": WSC_LABELS[c]} for e, c in zip(examples, result)]
        if self.task == "csl":
            return [{"id": e["id"], "label": CSL_LABELS[c]} for e, c in zip(examples, result)]
        if self.task == "cluener2020":
            return [{"id": e["id"], "label": decode_bio(e["text"], char_labels(words, tags, len(e["text"])))}
                    for e, words, tags in zip(examples, extra, result)]
        return [{"id": e["id"], "answer": a} for e, a in zip(examples, self._answers(examples, result, extra))]

    def _tokenize(self, first, second=None, truncation: bool | str = True, **extra):
        batch = self.tokenizer(first, second, truncation=truncation, max_length=self.max_seq_length,
                               padding=self.padding, return_tensors="pt", **extra)
        return batch.to(self.device)

    def _answers(self, examples: list[dict], spans, extra) -> list[str]:
        scores, starts, ends = spans
        window_example, offsets, _, _ = extra
        best: dict[int, tuple[float, int]] = {}  # example -> (score, window)
        for window, example in enumerate(window_example):
            if scores[window] > best.get(example, (float("-inf"), -1))[0]:
                best[example] = (scores[window], window)
        answers = []
        for example, e in enumerate(examples):
            if example not in best:
                answers.append("")
                continue
            window = best[example][1]
            begin, end = offsets[window, starts[window], 0].item(), offsets[window, ends[window], 1].item()
            answers.append(e["context"][begin:end])
        return answers

    def _clip_questions(self, questions: list[str]) -> tuple[list[str], int]:
        """Questions cut to MAX_QUESTION_TOKENS tokens and half the window; the longest one's token count."""
        limit = min(MAX_QUESTION_TOKENS, self.max_seq_length // 2)
        tokens = self.tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        clipped = [q if len(spans) <= limit else q[:spans[limit - 1][1]] for q, spans in zip(questions, tokens)]
        return clipped, min(limit, max(len(spans) for spans in tokens))
