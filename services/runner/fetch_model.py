"""Fetch one model's ``bentoml models export`` archive, check it, and import it into the store.

The chart's ``model-fetch`` init container runs this when ``models.<name>.modelUri`` is set
(KServe's ``storageUri`` idea: the image stays the same, the model arrives at start)::

    python -m services.runner.fetch_model --model lightgbm \\
        --uri https://models.example.com/lightgbm-3.bentomodel --sha256 <64 hex digits>

``--uri`` is https://, file:// or an absolute path on a mounted volume (a PVC, a CSI bucket
mount); http:// only with ``--allow-insecure-http`` (without TLS anyone on the path can swap
the archive; the chart requires ``modelSha256`` with every URI for that reason too). The
archive is streamed to ``$TMPDIR`` (an emptyDir in the pod), its size is checked against
Content-Length and its SHA-256 against ``--sha256`` when given, then ``import-models.sh``
(docker/import-models.sh, on PATH in the runner image) imports it into ``$BENTOML_HOME/models``
and opens it to the pod's UID. Every failure exits 1 with one line naming the model and the
URI, which ``kubectl describe pod`` and the init container's log show.

Standard library only: it runs in the runner image before anything else.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
IMPORT_SCRIPT = "import-models.sh"


class ModelFetchError(Exception):
    """Fetching, checking or importing a model archive failed; the message names model and URI."""

    def __init__(self, model: str, uri: str, reason: str):
        super().__init__(f"model {model!r} from {redact(uri)}: {reason}")


def redact(uri: str) -> str:
    """The URI without user info or query string (either may carry a credential)."""
    parts = urllib.parse.urlsplit(uri)
    if not parts.scheme or parts.scheme == "file":
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    query = "?<redacted>" if parts.query else ""
    return f"{parts.scheme}://{host}{parts.path}{query}"


def _copy_with_digest(source, target, expected_length: int | None) -> str:  # type: ignore[no-untyped-def]
    digest = hashlib.sha256()
    received = 0
    while True:
        chunk = source.read(CHUNK_BYTES)
        if not chunk:
            break
        digest.update(chunk)
        target.write(chunk)
        received += len(chunk)
    if expected_length is not None and received != expected_length:
        raise OSError(f"truncated download: received {received} of {expected_length} bytes")
    if received == 0:
        raise OSError("the archive is empty")
    return digest.hexdigest()


def fetch(model: str, uri: str, destination: Path, timeout_seconds: float) -> str:
    """Copy the archive at ``uri`` to ``destination``; its SHA-256 (hex)."""
    parts = urllib.parse.urlsplit(uri)
    try:
        if parts.scheme in ("http", "https"):
            request = urllib.request.Request(uri, headers={"User-Agent": "winemeup-fetch-model/1"})
            with (
                urllib.request.urlopen(request, timeout=timeout_seconds) as response,
                open(destination, "wb") as out,
            ):
                length = response.headers.get("Content-Length")
                return _copy_with_digest(response, out, int(length) if length else None)
        if parts.scheme in ("", "file"):
            path = Path(urllib.parse.unquote(parts.path) if parts.scheme else uri)
            if not path.is_absolute():
                raise OSError("a path must be absolute (a mounted volume)")
            with open(path, "rb") as source, open(destination, "wb") as out:
                return _copy_with_digest(source, out, path.stat().st_size)
        raise OSError(f"unsupported scheme {parts.scheme!r} (use http, https, file or an absolute path)")
    except urllib.error.HTTPError as e:
        raise ModelFetchError(model, uri, f"HTTP {e.code} {e.reason}") from e
    except (OSError, ValueError) as e:  # URLError, timeouts, IncompleteRead, missing files
        raise ModelFetchError(model, uri, f"{type(e).__name__}: {e}") from e


def import_archive(model: str, uri: str, archive: Path, import_script: str | None) -> None:
    """Import with docker/import-models.sh, using the ``bentoml`` of this interpreter."""
    script = import_script or shutil.which(IMPORT_SCRIPT)
    if not script:
        raise ModelFetchError(model, uri, f"{IMPORT_SCRIPT} is not on PATH")
    bentoml = shutil.which("bentoml", path=str(Path(sys.executable).parent)) or shutil.which("bentoml")
    if not bentoml:
        raise ModelFetchError(model, uri, "the bentoml command is not installed")
    result = subprocess.run(
        ["sh", script, bentoml, str(archive)], capture_output=True, text=True, timeout=600, check=False
    )
    sys.stderr.write(result.stdout + result.stderr)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelFetchError(model, uri, f"import failed (not a complete bentoml export?): {last}")


def run(
    model: str,
    uri: str,
    sha256: str | None,
    timeout_seconds: float,
    import_script: str | None,
    allow_insecure_http: bool = False,
) -> None:
    """Fetch, check and import one model archive; raises ModelFetchError."""
    if urllib.parse.urlsplit(uri).scheme == "http" and not allow_insecure_http:
        raise ModelFetchError(
            model, uri, "http:// is refused: use https:// (or --allow-insecure-http, with --sha256)"
        )
    if not os.environ.get("BENTOML_HOME"):
        raise ModelFetchError(model, uri, "BENTOML_HOME must name the model store to import into")
    # Kubernetes may run an init container again over the volume it already filled (a pod
    # restart keeps emptyDirs): the same archive, imported before, is not imported twice.
    marker = Path(os.environ["BENTOML_HOME"]) / ".fetched" / f"{model}.sha256"
    done_before = marker.read_text().strip() if marker.is_file() else ""
    if sha256 and done_before == sha256.lower():
        logger.info("model %r: archive %s already imported into this store", model, done_before)
        return
    with tempfile.TemporaryDirectory(prefix="fetch-model-") as scratch:
        archive = Path(scratch) / f"{model}.bentomodel"
        logger.info("fetching model %r from %s", model, redact(uri))
        actual = fetch(model, uri, archive, timeout_seconds)
        if sha256 and actual != sha256.lower():
            raise ModelFetchError(model, uri, f"SHA-256 mismatch: expected {sha256.lower()}, got {actual}")
        logger.info("model %r: %d bytes, sha256 %s%s", model, archive.stat().st_size, actual,
                    " (verified)" if sha256 else " (no checksum given)")  # fmt: skip
        if done_before == actual:
            logger.info("model %r: archive %s already imported into this store", model, actual)
            return
        import_archive(model, uri, archive, import_script)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(actual + "\n")
    logger.info("model %r imported into %s/models", model, os.environ["BENTOML_HOME"])


def main(argv: list[str] | None = None) -> int:
    """Command line of the model-fetch init container; exit 1 with a one-line reason on failure."""
    parser = argparse.ArgumentParser(
        prog="python -m services.runner.fetch_model", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", required=True, help="model name (for messages)")
    parser.add_argument("--uri", required=True, help="https://, file:// or an absolute path")
    parser.add_argument(
        "--sha256", default="", help="expected SHA-256 of the archive (hex); empty: not checked"
    )
    parser.add_argument(
        "--timeout-seconds", type=float, default=60.0, help="deadline of connect and each read"
    )
    parser.add_argument("--import-script", default=None, help=f"path of {IMPORT_SCRIPT} (default: from PATH)")
    parser.add_argument("--allow-insecure-http", action="store_true", help="accept an http:// URI (no TLS)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s fetch-model: %(message)s")
    if args.sha256 and (
        len(args.sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in args.sha256)
    ):
        logger.error("model %r from %s: --sha256 must be 64 hex digits", args.model, redact(args.uri))
        return 2
    try:
        run(
            args.model,
            args.uri,
            args.sha256 or None,
            args.timeout_seconds,
            args.import_script,
            args.allow_insecure_http,
        )
    except ModelFetchError as e:
        logger.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
