"""An example finalist engineered for speed: RoBERTa-tiny's size (4 layers x 312, 12 heads, FFN 1,248) over
one token per character, with every step of predict() built to run in few, large, fixed-shape operations.

What it does, each technique switchable off for bench/example_teams.py (`--ablate`), measured in README.md:
- vectorized host (`vectorized`): tokenizing is a numpy table lookup over the batch's joined text, rows are
  laid out, windowed and decoded with numpy (task_inputs.py); no per-example Python beyond reading fields
  and writing predictions.
- static shapes (`static_shapes`, default on a GPU only): rows padded to a bucket, a power of two of rows
  (1..16, CMRC windows 1..32) times a power of two of tokens (32..the task's length), so each call hits
  one of a few shapes known at load. On CPU padding only adds work, so it is off there.
- half precision (`half`, GPU only): the model in fp16; CMRC's span scores in fp32.
- CUDA graphs (`cuda_graphs`, GPU only, needs static shapes): the whole device side (model, argmax or best
  span search, sort) captured once per bucket at load and replayed per call: one launch instead of ~100.
- pinned memory (`pinned`, GPU only): inputs written into page-locked host memory and copied
  asynchronously, results copied back into page-locked memory; one synchronize per call.
Nothing is cached across calls: the buffers that stay (int64 inputs/outputs, the captured graphs) are
overwritten in full by every call, and every call recomputes from its inputs.

Weights are a seeded random initialization (no download), as the reference's: parameter count and speed
are a trained model's, predictions are valid in format and near chance in content. Parameters: word
embeddings 8,004 x 312, positions 512 x 312, 3 segments x 312, LayerNorm 624 (2,658,552), 4 layers of
1,172,184, then per task the pooler and 2-way head (98,282) for cluewsc2020 and csl, a 21-way token head
(6,573) for cluener2020, a start/end head (626) for cmrc2018: at most 7,445,570.

Per task (as CLUE's BERT baselines, one token per character):
- cluewsc2020 (128 tokens): the text; the candidate's characters in segment 1, the pronoun's in segment 2.
- csl (256): [CLS] keywords joined by spaces [SEP] abstract [SEP], longest-first truncation.
- cluener2020 (64): the characters, BIO over the 10 types.
- cmrc2018 (512): [CLS] question [SEP] context window [SEP], windows overlapping by up to 128 characters,
  the best span of at most 30 characters over all windows.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from task_inputs import (MAX_ANSWER_CHARS, MAX_QUESTION_CHARS, NER_LABELS, PAD, SEP, CharTable, best_windows,
                         bio_entities, cmrc_windows, decode_bio, entity_dicts, layout, locate_span, pair_lengths)

HERE = Path(__file__).resolve().parent
MAX_SEQ_LENGTH = {"cluewsc2020": 128, "csl": 256, "cluener2020": 64, "cmrc2018": 512}
MAX_ROWS = {"cluewsc2020": 16, "csl": 16, "cluener2020": 16, "cmrc2018": 32}   # CMRC rows are windows
MIN_WIDTH = 32
LABELS = {"cluewsc2020": ("false", "true"), "csl": ("0", "1")}
HAS_SDPA = hasattr(F, "scaled_dot_product_attention")                          # torch >= 2.0


class Layer(nn.Module):
    """A post-LayerNorm transformer layer (BERT's), with Q, K and V in one projection."""

    def __init__(self, hidden: int, heads: int, ffn: int, eps: float):
        super().__init__()
        self.heads = heads
        self.qkv, self.out = nn.Linear(hidden, 3 * hidden), nn.Linear(hidden, hidden)
        self.ffn_in, self.ffn_out = nn.Linear(hidden, ffn), nn.Linear(ffn, hidden)
        self.norm1, self.norm2 = nn.LayerNorm(hidden, eps=eps), nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        rows, width, hidden = x.shape
        q, k, v = self.qkv(x).view(rows, width, 3, self.heads, hidden // self.heads).permute(2, 0, 3, 1, 4)
        if HAS_SDPA:
            mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        else:                                       # torch 1.13 (the runner image): the same, by hand
            scores = (q @ k.transpose(-1, -2)).float() / math.sqrt(q.shape[-1])
            mixed = scores.masked_fill(~keep, torch.finfo(torch.float32).min).softmax(-1).to(v.dtype) @ v
        x = self.norm1(x + self.out(mixed.transpose(1, 2).reshape(rows, width, hidden)))
        return self.norm2(x + self.ffn_out(F.gelu(self.ffn_in(x))))


class TinyEncoder(nn.Module):
    """Character embeddings + positions + segments, LayerNorm, the layers; and the task's head.

    forward(inputs [2, rows, width] int64: token ids and segments) -> int64 results, the task's decision
    made on the device: the class per row, the label per token, or for CMRC [4, rows] (start token, span
    length - 1, the rows ordered by best span score, whether the row has a valid span)."""

    def __init__(self, task: str, config: dict):
        super().__init__()
        hidden, eps = config["hidden_size"], config["layer_norm_eps"]
        self.task = task
        self.words = nn.Embedding(config["vocab_size"], hidden)
        self.positions = nn.Embedding(config["max_position_embeddings"], hidden)
        self.segments = nn.Embedding(config["segment_vocab_size"], hidden)
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.layers = nn.ModuleList(Layer(hidden, config["num_attention_heads"], config["intermediate_size"], eps)
                                    for _ in range(config["num_hidden_layers"]))
        self.pooler = nn.Linear(hidden, hidden) if task in LABELS else None
        outputs = {"cluener2020": len(NER_LABELS), "cmrc2018": 2}.get(task, 2)
        self.head = nn.Linear(hidden, outputs)
        for module in self.modules():               # BERT's initialization
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=config["initializer_range"])
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        ids, segments = inputs[0], inputs[1]
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.norm(self.words(ids) + self.positions(positions)[None] + self.segments(segments))
        keep = (ids != PAD)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, keep)
        if self.pooler is not None:
            return self.head(torch.tanh(self.pooler(x[:, 0]))).argmax(-1)
        logits = self.head(x)
        if self.task == "cluener2020":
            return logits.argmax(-1)
        return best_spans(logits.float(), (segments == 1) & (ids != SEP))


def best_spans(logits: torch.Tensor, context: torch.Tensor, longest: int = MAX_ANSWER_CHARS) -> torch.Tensor:
    """Per row, the best span of at most `longest` context tokens (= characters) by start + end logit:
    [4, rows] int64 (start, length - 1, rows ordered best first, valid)."""
    start, end = logits.masked_fill(~context[..., None], float("-inf")).unbind(-1)
    ends = F.pad(end, (0, longest - 1), value=float("-inf")).unfold(1, longest, 1)   # [rows, width, longest]
    best, flat = (start[..., None] + ends).flatten(1).max(1)
    order = torch.sort(best, descending=True, stable=True).indices
    return torch.stack([flat // longest, flat % longest, order, torch.isfinite(best).long()])


def bucket(n: int, smallest: int, largest: int) -> int:
    """The smallest power of two >= n (and >= smallest), at most largest."""
    return min(largest, max(smallest, 1 << max(n - 1, 0).bit_length()))


class Predictor:
    """Predictor(task, device); predict(examples) -> one prediction per example, in the official format."""

    def __init__(self, task: str, device: str = "cpu", seed: int = 2020, doc_stride: int = 128,
                 vectorized: bool = True, static_shapes: bool | None = None, half: bool = True,
                 cuda_graphs: bool = True, pinned: bool = True):
        if task not in MAX_SEQ_LENGTH:
            raise ValueError(f"unknown task {task!r}; expected one of {', '.join(MAX_SEQ_LENGTH)}")
        self.task, self.device = task, torch.device(device)
        gpu = self.device.type == "cuda"
        self.width, self.max_rows, self.doc_stride = MAX_SEQ_LENGTH[task], MAX_ROWS[task], doc_stride
        self.vectorized = vectorized
        self.static_shapes = gpu if static_shapes is None else static_shapes
        self.half, self.pinned = gpu and half, gpu and pinned
        self.chars = CharTable(HERE / "vocab.txt")
        config = json.loads((HERE / "config.json").read_text())
        torch.manual_seed(seed)
        self.model = TinyEncoder(task, config).to(self.device).eval()
        if self.half:
            self.model.half()
        self.graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self.graph_error = ""
        if gpu and cuda_graphs and self.static_shapes:
            try:
                self._capture()
            except RuntimeError as exc:        # a torch that cannot capture: eager, and said so
                self.graphs.clear()
                self.graph_error = f"{type(exc).__name__}: {exc}"
                print(f"fast-tiny-team: CUDA graphs not captured, running eager ({self.graph_error})",
                      file=sys.stderr)
        if self.pinned:                 # page-locked int64 staging, sized for the largest bucket
            self.host_in = torch.empty(2 * self.max_rows * self.width, dtype=torch.int64).pin_memory()
            self.host_out = torch.empty(4 * self.max_rows * self.width, dtype=torch.int64).pin_memory()

    def parameter_sources(self) -> list[torch.nn.Module]:
        return [self.model]

    def predict(self, examples: list[dict]) -> list[dict]:
        if not examples:
            return []
        return self.decode(examples, self.forward(self.encode(examples)))

    # predict() in three steps, so that bench/example_teams.py can time the host and the device apart.

    def encode(self, examples: list[dict]) -> list[dict]:
        """Host side: model inputs per chunk of at most max_rows rows, as numpy [2, rows, width] int64."""
        if self.task == "cmrc2018":
            return self._encode_cmrc(examples)
        chunks = []
        for begin in range(0, len(examples), self.max_rows):
            part = examples[begin:begin + self.max_rows]
            chunks.append(getattr(self, f"_encode_{self.task}")(part))
        return chunks

    def forward(self, chunks: list[dict]) -> tuple[list[dict], list[np.ndarray]]:
        """Device side: each chunk through the model, results back on the host as numpy int64."""
        return chunks, [self._run(chunk["inputs"]) for chunk in chunks]

    def decode(self, examples: list[dict], forwarded: tuple[list[dict], list[np.ndarray]]) -> list[dict]:
        """Host side: device results -> predictions in the task's official format."""
        chunks, results = forwarded
        if self.task == "cmrc2018":
            answers = [a for chunk, result, part in zip(chunks, results, self._cmrc_parts(examples, chunks))
                       for a in self._answers(part, chunk, result)]
            return [{"id": e["id"], "answer": a} for e, a in zip(examples, answers)]
        out = []
        for begin, result in zip(range(0, len(examples), self.max_rows), results):
            part = examples[begin:begin + self.max_rows]
            if self.task == "cluener2020":
                out += [{"id": e["id"], "label": label} for e, label in zip(part, self._entities(part, result))]
            else:
                labels = LABELS[self.task]
                out += [{"id": e["id"], "label": labels[c]} for e, c in zip(part, result[:len(part)].tolist())]
        return out

    # --- shapes and the device ------------------------------------------------------------------------

    def _shape(self, rows: int, longest_row: int) -> tuple[int, int]:
        if not self.static_shapes:
            return rows, min(self.width, longest_row)
        return bucket(rows, 1, self.max_rows), bucket(longest_row, MIN_WIDTH, self.width)

    def _buckets(self) -> list[tuple[int, int]]:
        rows = [1 << i for i in range(self.max_rows.bit_length()) if 1 << i <= self.max_rows]
        widths = sorted({bucket(w, MIN_WIDTH, self.width) for w in (MIN_WIDTH << i for i in range(8))})
        return sorted(((r, w) for r in rows for w in widths), key=lambda s: -s[0] * s[1])

    @torch.no_grad()
    def _capture(self) -> None:
        """One CUDA graph per bucket, largest first, all in one memory pool (they never run concurrently).
        Each is warmed up on a side stream first, as torch.cuda.graph requires."""
        pool = torch.cuda.graph_pool_handle()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        for rows, width in self._buckets():
            static_in = torch.zeros((2, rows, width), dtype=torch.int64, device=self.device)
            static_in[0, :, 0] = 2          # [CLS]: no row is all padding
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self.model(static_in)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                static_out = self.model(static_in)
            self.graphs[(rows, width)] = (graph, static_in, static_out)
        torch.cuda.synchronize()

    @torch.no_grad()
    def _run(self, inputs: np.ndarray) -> np.ndarray:
        shape = tuple(inputs.shape[1:])
        if self.pinned:
            staged = self.host_in[:inputs.size].view(inputs.shape)
            staged.numpy()[...] = inputs
        else:
            staged = torch.from_numpy(inputs)
        if shape in self.graphs:
            graph, static_in, out = self.graphs[shape]
            static_in.copy_(staged, non_blocking=self.pinned)
            graph.replay()
        else:
            out = self.model(staged.to(self.device, non_blocking=self.pinned))
        if self.pinned:
            back = self.host_out[:out.numel()].view(out.shape)
            back.copy_(out, non_blocking=True)
            torch.cuda.current_stream().synchronize()
            return back.numpy().copy()
        return out.cpu().numpy()

    # --- per task, host side --------------------------------------------------------------------------

    def _single(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
        flat, starts, lengths = self.chars.lookup(texts, self.vectorized)
        lengths = np.minimum(lengths, self.width - 2)
        rows, width = self._shape(len(texts), int(lengths.max()) + 2)
        ids, segments = layout([(flat, starts, lengths)], width, rows)
        return ids, segments, lengths

    def _encode_cluewsc2020(self, examples: list[dict]) -> dict:
        texts = [e["text"] for e in examples]
        ids, segments, _ = self._single(texts)
        spans = np.full((len(texts), 2, 2), -1, dtype=np.int64)     # [example, candidate|pronoun, begin|end]
        for i, (text, e) in enumerate(zip(texts, examples)):       # reading and checking each example's target
            target = e.get("target") or {}
            for k, key in enumerate(("span1", "span2")):
                span = locate_span(text, target.get(f"{key}_text"), target.get(f"{key}_index"))
                spans[i, k] = span if span is not None else (-1, -1)
        character = np.arange(ids.shape[1])[None, :] - 1
        for k in range(2):                                        # the candidate is segment 1, the pronoun 2
            inside = (character >= spans[:, k, :1]) & (character < spans[:, k, 1:]) & (ids[:len(texts)] > SEP)
            segments[:len(texts)][inside] = k + 1
        return {"inputs": np.stack([ids, segments])}

    def _encode_csl(self, examples: list[dict]) -> dict:
        first = self.chars.lookup([" ".join(e["keyword"]) for e in examples], self.vectorized)
        second = self.chars.lookup([e["abst"] for e in examples], self.vectorized)
        kept_first, kept_second = pair_lengths(first[2], second[2], self.width - 3)
        rows, width = self._shape(len(examples), int((kept_first + kept_second).max()) + 3)
        ids, segments = layout([(first[0], first[1], kept_first), (second[0], second[1], kept_second)], width, rows)
        return {"inputs": np.stack([ids, segments])}

    def _encode_cluener2020(self, examples: list[dict]) -> dict:
        ids, segments, lengths = self._single([e["text"] for e in examples])
        return {"inputs": np.stack([ids, segments]), "lengths": lengths}

    def _entities(self, examples: list[dict], labels: np.ndarray) -> list[dict]:
        texts = [e["text"] for e in examples]
        chars = labels[:len(texts), 1:-1]                          # token 1 + i is character i
        lengths = np.minimum(np.fromiter(map(len, texts), np.int64, len(texts)), chars.shape[1])
        if self.vectorized:
            return entity_dicts(texts, *bio_entities(chars, lengths))
        return [decode_bio(text, [NER_LABELS[c] for c in row[:n]] + ["O"] * (len(text) - n))
                for text, row, n in zip(texts, chars.tolist(), lengths.tolist())]

    def _encode_cmrc(self, examples: list[dict]) -> list[dict]:
        """One chunk of windows; when they exceed max_rows, the examples in halves (each example keeps at
        most max_rows windows)."""
        question = self.chars.lookup([e["question"] for e in examples], self.vectorized)
        context = self.chars.lookup([e["context"] for e in examples], self.vectorized)
        question_lengths = np.minimum(question[2], MAX_QUESTION_CHARS)
        example, first, length = cmrc_windows(question_lengths, context[2], self.width, self.doc_stride)
        if len(example) > self.max_rows and len(examples) > 1:
            half = len(examples) // 2
            return self._encode_cmrc(examples[:half]) + self._encode_cmrc(examples[half:])
        example, first, length = example[:self.max_rows], first[:self.max_rows], length[:self.max_rows]
        rows, width = self._shape(len(example), int((question_lengths[example] + length).max()) + 3)
        ids, segments = layout([(question[0], question[1][example], question_lengths[example]),
                                (context[0], context[1][example] + first, length)], width, rows)
        return [{"inputs": np.stack([ids, segments]), "example": example, "first": first,
                 "offset": question_lengths[example] + 2, "n": len(examples)}]

    @staticmethod
    def _cmrc_parts(examples: list[dict], chunks: list[dict]) -> list[list[dict]]:
        begins = np.cumsum([0] + [chunk["n"] for chunk in chunks])
        return [examples[a:b] for a, b in zip(begins[:-1], begins[1:])]

    def _answers(self, examples: list[dict], chunk: dict, result: np.ndarray) -> list[str]:
        """Each example's best span over its windows, as context characters ("" when it has none)."""
        start, extra, order, valid = result
        window = best_windows(chunk["example"], order, valid.astype(bool), len(examples))
        found = window >= 0
        begin = np.zeros(len(examples), dtype=np.int64)
        w = window[found]
        begin[found] = chunk["first"][w] + start[w] - chunk["offset"][w]
        end = begin + np.where(found, extra[np.maximum(window, 0)] + 1, 0)
        return [e["context"][b:c] for e, b, c in zip(examples, begin.tolist(), end.tolist())]
