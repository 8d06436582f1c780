#!/bin/sh
# Build-time step: export one ONNX model per task into models/ (torch and transformers are needed here
# only; predict() runs on onnxruntime), then check that onnxruntime loads them. No network.
set -eu
python3 export_onnx.py models
python3 -c "
import onnxruntime, tokenizers
for task in ('cluewsc2020', 'csl', 'cluener2020', 'cmrc2018'):
    onnxruntime.InferenceSession('models/' + task + '.onnx', providers=['CPUExecutionProvider'])
print('onnx-team setup: onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers(),
      '/ tokenizers', tokenizers.__version__)
try:
    import torch
    gpu = torch.cuda.is_available()
except Exception:
    gpu = False
if gpu and 'CUDAExecutionProvider' not in onnxruntime.get_available_providers():
    print('onnx-team setup: WARNING a CUDA device is visible but this onnxruntime has no CUDAExecutionProvider:',
          'predict() will run on the CPU; install onnxruntime-gpu in the runner environment')"
