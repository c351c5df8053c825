"""Serve the demo model from a local Hugging Face Hub look-alike, for verify_deb.sh.

    python3 packaging/linux/serve_fake_hub.py DEMO_MODEL_FOLDER URL_FILE

Serves it as the public repo `gpi-test/demo-model` and as the gated repo
`gpi-test/gated-model`, writes the endpoint URL to URL_FILE, and serves until
killed. Uses the tests' FakeHub (standard library only), so the installed
program's download path (huggingface_hub, its HTTP client, the cache) runs
against the same server the unit tests use, without the network.
"""

import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from hubserver import FakeHub, repo_from_folder


def main() -> None:
    folder, url_file = Path(sys.argv[1]), Path(sys.argv[2])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with FakeHub() as hub:
        hub.add(repo_from_folder("gpi-test/demo-model", folder))
        hub.add(repo_from_folder("gpi-test/gated-model", folder, access="gated"))
        url_file.write_text(hub.url + "\n", encoding="utf-8")
        stop.wait()


if __name__ == "__main__":
    main()
