"""Build time: export one ONNX model per task (models/<task>.onnx) from the torch model it describes.

The torch model: a TinyBERT-4-size BERT (config.json: 4 layers, hidden 312, 12 heads, FFN 1200) over the
8,021-token vocabulary in vocab.txt, plus the task's head, with seeded random weights (no download). It is
traced with torch.onnx's TorchScript exporter, which torch 1.13 (the runner image) has and torch 2.x keeps
behind `dynamo=False` (so onnxscript is not needed), with eager attention (the exporter knows its ops),
constant folding, and dynamic batch and sequence axes. Position ids are an input, so the model's
position-id buffer is not written out as a weight.

Biases and LayerNorm parameters are drawn at random too (a fresh BERT has them all zeros and ones). Both
the exporter and the harness treat tensors with identical content as one tied weight, which is right for a
trained model (two trained tensors are never equal unless tied) but would merge a fresh model's dozens of
zero biases into one and undercount it by about 15,000 parameters.

`python export_onnx.py [OUT_DIR]` (default: models/ beside this file); run by setup.sh.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import torch
from transformers import (BertConfig, BertForQuestionAnswering, BertForSequenceClassification,
                          BertForTokenClassification)

HERE = Path(__file__).resolve().parent
TASKS = ("cluewsc2020", "csl", "cluener2020", "cmrc2018")
N_NER_LABELS = 21          # "O" plus B-/I- for each of CLUENER2020's 10 types
INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")
OPSET = 14


def build_model(task: str, seed: int = 2020, config_path: Path = HERE / "config.json") -> torch.nn.Module:
    """The encoder from config.json plus the task's head, weights drawn from `seed`, eager attention."""
    config = BertConfig.from_json_file(str(config_path))
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    if task == "cluener2020":
        config.num_labels = N_NER_LABELS
        model = BertForTokenClassification(config)
    elif task == "cmrc2018":
        model = BertForQuestionAnswering(config)
    else:
        config.num_labels = 2
        model = BertForSequenceClassification(config)
    with torch.no_grad():  # biases and LayerNorms as a trained model has them: no two tensors alike
        for parameter in model.parameters():
            if parameter.dim() == 1:
                parameter.add_(torch.randn_like(parameter), alpha=config.initializer_range)
    return model.eval()


class Exported(torch.nn.Module):
    """Positional inputs and plain tensor outputs: what the exporter and onnxruntime see."""

    def __init__(self, model: torch.nn.Module, task: str):
        super().__init__()
        self.model, self.task = model, task

    def forward(self, input_ids, attention_mask, token_type_ids, position_ids):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                         position_ids=position_ids, return_dict=True)
        if self.task == "cmrc2018":
            return out.start_logits, out.end_logits
        return out.logits


def output_names(task: str) -> list[str]:
    return ["start_logits", "end_logits"] if task == "cmrc2018" else ["logits"]


def export(task: str, path: Path, seed: int = 2020) -> torch.nn.Module:
    """Write the task's model to `path`; returns the torch model it was exported from."""
    model = build_model(task, seed)
    length = 16
    ids = torch.randint(1, 100, (2, length))
    example = (ids, torch.ones_like(ids), torch.zeros_like(ids), torch.arange(length).expand(2, length))
    dynamic = {name: {0: "batch", 1: "sequence"} for name in INPUTS + tuple(output_names(task))}
    extra = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(Exported(model, task), example, str(path), input_names=list(INPUTS),
                          output_names=output_names(task), dynamic_axes=dynamic, opset_version=OPSET,
                          do_constant_folding=True, **extra)
    return model


def main(out_dir: Path = HERE / "models") -> None:
    for task in TASKS:
        model = export(task, out_dir / f"{task}.onnx")
        print(f"exported {task}: {model.num_parameters():,} parameters -> {out_dir / f'{task}.onnx'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "models")
