"""For bench/gpu_day.py, section 8: a team that keeps the device busy whenever it is not inside predict().

On cuda a background thread queues large matrix products without waiting for them (the launch queue holds
seconds of work); on a CPU it burns the CPU. Freezing the team's processes stops new work at once, but not
kernels already queued on the GPU: the reference's timed windows beside this team, against its own warm-up
windows, show what reaches it. Answers are fixed (CLUEWSC2020 "true", CSL "0"); 40 parameters."""
import threading
import time

import torch


class Predictor:
    def __init__(self, task, device):
        self.task, self.device = task, torch.device(device)
        self.embed = torch.nn.Embedding(10, 4).to(self.device)
        self.inside = threading.Event()
        threading.Thread(target=self._busy, daemon=True).start()

    def _busy(self):
        if self.device.type == "cuda":
            a = torch.randn(4096, 4096, device=self.device)
            while True:
                if self.inside.is_set():
                    time.sleep(0.0005)
                else:
                    a = (a @ a).clamp_(-1, 1)           # queued, never waited for
        while True:
            if self.inside.is_set():
                time.sleep(0.0005)
            else:
                sum(i * i for i in range(5_000))

    def predict(self, examples):
        self.inside.set()
        try:
            time.sleep(0.002)
            label = "true" if self.task == "cluewsc2020" else "0"
            return [{"id": e["id"], "label": label} for e in examples]
        finally:
            self.inside.clear()
