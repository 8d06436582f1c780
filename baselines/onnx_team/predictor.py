"""An example finalist that ships ONNX: a TinyBERT-4-size BERT per task, run with ONNX Runtime.

setup.sh exports the models at build time (export_onnx.py: models/<task>.onnx, inside the image), so the
submission carries code and a config, not weight files. predict() tokenizes with BERT's fast tokenizer
(vocab.txt: the same 8,021-token vocabulary as ../roberta_tiny_team, made by its make_vocab.py), runs the
ONNX model with onnxruntime and decodes with numpy: no torch at inference.

Provider: CUDAExecutionProvider first when the device is cuda and onnxruntime-gpu offers it, otherwise
CPUExecutionProvider. The one in use is `Predictor.provider`, printed to stderr at load, so it lands in
the run's log, with a warning when the device is cuda and the session runs on the CPU all the same (the
harness flags that row too, from the sessions' get_providers()). parameter_sources() returns the ONNX file: the harness counts its initializers.

Parameters: the harness counts the ONNX initializers (identical tensors once, so a tied weight counts
once) and gets the torch model's own count: 7,330,562 for the classification tasks (encoder with pooler
7,329,936 + head 626), 7,238,853 for NER and 7,232,906 for CMRC (no pooler; heads 6,573 and 626).
Predictions: valid in format, near chance in content (seeded random weights, no training).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from transformers import BertTokenizerFast
from transformers.models.bert.tokenization_bert import load_vocab

from task_inputs import (MAX_ANSWER_CHARS, MAX_QUESTION_TOKENS, best_spans, char_labels, decode_bio,
                         mark_wsc_spans)

HERE = Path(__file__).resolve().parent
MODELS = HERE / "models"
MAX_SEQ_LENGTH = {"cluewsc2020": 128, "csl": 256, "cluener2020": 64, "cmrc2018": 512}
WSC_LABELS = ("false", "true")
CSL_LABELS = ("0", "1")


def build_tokenizer(vocab_path: Path = HERE / "vocab.txt") -> BertTokenizerFast:
    """BERT's fast WordPiece tokenizer over vocab.txt, offline, in transformers 4 and 5 alike."""
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


def choose_providers(device: str) -> list[str]:
    """CUDA first when asked for and available, CPU always as the fallback."""
    available = ort.get_available_providers()
    if device.startswith("cuda") and "CUDAExecutionProvider" in available:
        index = device.partition(":")[2] or "0"
        return [("CUDAExecutionProvider", {"device_id": int(index)}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class Predictor:
    """Predictor(task, device); predict(examples) -> one prediction per example, in the official format."""

    def __init__(self, task: str, device: str = "cpu", padding: str = "max_length", doc_stride: int = 128,
                 models_dir: Path | str = MODELS):
        if task not in MAX_SEQ_LENGTH:
            raise ValueError(f"unknown task {task!r}; expected one of {', '.join(MAX_SEQ_LENGTH)}")
        self.task, self.device = task, device
        self.max_seq_length, self.padding, self.doc_stride = MAX_SEQ_LENGTH[task], padding, doc_stride
        self.model_path = Path(models_dir) / f"{task}.onnx"
        if not self.model_path.is_file():
            raise FileNotFoundError(f"{self.model_path} is missing: setup.sh (export_onnx.py) writes it")
        self.tokenizer = build_tokenizer()
        self.session = ort.InferenceSession(str(self.model_path), providers=choose_providers(device))
        self.provider = self.session.get_providers()[0]
        print(f"onnx-team: {task} on onnxruntime {ort.__version__} {self.provider}", file=sys.stderr)
        if device.startswith("cuda") and self.provider != "CUDAExecutionProvider":
            print(f"onnx-team: WARNING device {device} but ONNX Runtime runs on {self.provider} (available: "
                  f"{', '.join(ort.get_available_providers())}): onnxruntime-gpu is missing or its CUDA "
                  "libraries did not load", file=sys.stderr)

    def parameter_sources(self) -> list[Path]:
        return [self.model_path]

    def predict(self, examples: list[dict]) -> list[dict]:
        if not examples:
            return []
        return self.decode(examples, self.forward(self.encode(examples)))

    # predict() in three steps, so that bench/example_teams.py can time the host and the model apart.

    def encode(self, examples: list[dict]):
        """Host side: tokenized model inputs and what decoding needs."""
        if self.task == "cluewsc2020":
            return self._tokenize([mark_wsc_spans(e["text"], e.get("target") or {}) for e in examples]), None
        if self.task == "csl":
            return self._tokenize([" ".join(e["keyword"]) for e in examples], [e["abst"] for e in examples]), None
        if self.task == "cluener2020":
            batch = self._tokenize([list(e["text"]) for e in examples], is_split_into_words=True)
            return batch, [batch.word_ids(b) for b in range(len(examples))]
        questions, longest = self._clip_questions([e["question"] for e in examples])
        stride = max(0, min(self.doc_stride, (self.max_seq_length - longest - 3) // 2))
        batch = self._tokenize(questions, [e["context"] for e in examples], truncation="only_second",
                               stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True)
        window_example = batch.pop("overflow_to_sample_mapping").tolist()
        offsets = batch.pop("offset_mapping")
        in_context = np.array([[s == 1 for s in batch.sequence_ids(w)] for w in range(len(window_example))])
        return batch, (window_example, offsets, in_context)

    def forward(self, encoded):
        """Model side: the ONNX session on the tokenized batch (copies in and out included)."""
        batch, extra = encoded
        ids = batch["input_ids"].astype(np.int64)
        positions = np.broadcast_to(np.arange(ids.shape[1], dtype=np.int64), ids.shape)
        feed = {"input_ids": ids, "attention_mask": batch["attention_mask"].astype(np.int64),
                "token_type_ids": batch["token_type_ids"].astype(np.int64),
                "position_ids": np.ascontiguousarray(positions)}
        outputs = self.session.run(None, feed)
        if self.task == "cmrc2018":
            window_example, offsets, in_context = extra
            return best_spans(outputs[0], outputs[1], in_context, offsets, MAX_ANSWER_CHARS), extra
        return outputs[0].argmax(-1), extra

    def decode(self, examples: list[dict], forwarded) -> list[dict]:
        """Host side: model outputs -> predictions in the task's official format."""
        result, extra = forwarded
        if self.task == "cluewsc2020":
            return [{"id": e["id"], "label": WSC_LABELS[int(c)]} for e, c in zip(examples, result)]
        if self.task == "csl":
            return [{"id": e["id"], "label": CSL_LABELS[int(c)]} for e, c in zip(examples, result)]
        if self.task == "cluener2020":
            return [{"id": e["id"], "label": decode_bio(e["text"], char_labels(words, tags.tolist(), len(e["text"])))}
                    for e, words, tags in zip(examples, extra, result)]
        return [{"id": e["id"], "answer": a} for e, a in zip(examples, self._answers(examples, result, extra))]

    def _tokenize(self, first, second=None, truncation: bool | str = True, **extra):
        return self.tokenizer(first, second, truncation=truncation, max_length=self.max_seq_length,
                              padding=self.padding, return_tensors="np", **extra)

    def _answers(self, examples: list[dict], spans, extra) -> list[str]:
        scores, starts, ends = spans
        window_example, offsets, _ = extra
        best: dict[int, tuple[float, int]] = {}  # example -> (score, window)
        for window, example in enumerate(window_example):
            if scores[window] > best.get(example, (float("-inf"), -1))[0]:
                best[example] = (float(scores[window]), window)
        answers = []
        for example, e in enumerate(examples):
            if example not in best:
                answers.append("")
                continue
            window = best[example][1]
            begin, end = int(offsets[window, starts[window], 0]), int(offsets[window, ends[window], 1])
            answers.append(e["context"][begin:end])
        return answers

    def _clip_questions(self, questions: list[str]) -> tuple[list[str], int]:
        """Questions cut to MAX_QUESTION_TOKENS tokens and half the window; the longest one's token count."""
        limit = min(MAX_QUESTION_TOKENS, self.max_seq_length // 2)
        tokens = self.tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        clipped = [q if len(spans) <= limit else q[:spans[limit - 1][1]] for q, spans in zip(questions, tokens)]
        return clipped, min(limit, max(len(spans) for spans in tokens))
