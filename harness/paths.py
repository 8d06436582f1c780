"""Where the bundled things are: this repository, its specs, the BERT-base reference, the sample data.

Standard library only, and low in the layers (README, Layout): the CLI's defaults, the spec's loader and a
backend asking "is this the bundled reference?" (harness.backends.docker) read the same paths without
importing the pipeline.
"""

from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
SPECS_DIR = REPO_DIR / "specs"
DEFAULT_SPEC = SPECS_DIR / "nlpcc2020.toml"
REFERENCE_DIR = REPO_DIR / "baselines" / "bert_reference"
REFERENCE_PREDICTOR = "predictor:Predictor"        # the reference's entry point inside REFERENCE_DIR
SAMPLE_DATA_DIR = REPO_DIR / "baselines" / "sample_data"
DEMO_TEAM_DIR = REPO_DIR / "baselines" / "demo_team"
