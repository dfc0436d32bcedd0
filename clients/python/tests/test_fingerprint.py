"""The shared fingerprint vectors (testdata/fingerprint/vectors.json) in Python: the client must
give exactly the normalised text, hash and kind the Rust emitter gives.

    python clients/python/tests/test_fingerprint.py     # or: pytest clients/python/tests
"""

import json
import sys
from pathlib import Path

VECTORS = Path(__file__).resolve().parents[3] / "testdata" / "fingerprint" / "vectors.json"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perfstream_client.fingerprint import fingerprint, hash_normalized  # noqa: E402


def test_every_shared_vector_matches():
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))["vectors"]
    assert len(vectors) >= 50, len(vectors)
    failures = []
    for v in vectors:
        f = fingerprint(v["sql"])
        got = (f.normalized, f.hash, f.query_type)
        want = (v["normalized"], v["hash"], v["query_type"])
        if got != want:
            failures.append(f"{v['name']}: {v['sql']!r}\n  want {want!r}\n  got  {got!r}")
    assert not failures, f"{len(failures)} of {len(vectors)} vectors differ:\n" + "\n".join(failures)
    return len(vectors)


def test_the_docs_example_hash():
    assert hash_normalized("test") == "9f86d081884c7d65"


if __name__ == "__main__":
    n = test_every_shared_vector_matches()
    test_the_docs_example_hash()
    print(f"fingerprint: {n} shared vectors match")
