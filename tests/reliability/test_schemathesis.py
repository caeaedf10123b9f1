"""schemathesis against the running server's own ``/docs.json``: generated requests for every documented
operation (the image fields get real PNG/JPEG files, or odd bytes), checked by schemathesis for no 5xx,
documented status codes, documented content types and response bodies matching the documented schemas,
and schema-invalid requests refused."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from imaging import encode, noise  # noqa: E402
from PIL import Image  # noqa: E402

pytestmark = pytest.mark.slow

IMAGES = [encode(Image.fromarray(noise(h, w, i)), fmt) for i, (h, w, fmt) in enumerate([(16, 16, "PNG"), (24, 40, "JPEG"), (8, 8, "WEBP")])]
schemathesis.openapi.format("binary", st.sampled_from(IMAGES) | st.binary(max_size=64))


OPERATIONS = ("POST /stylize", "POST /stylize.json")


def test_every_operation_conforms(server):
    """Driven through hypothesis directly (schemathesis' pytest plugin does not load under this pytest)."""
    from hypothesis import given

    schema = schemathesis.openapi.from_url(server.url("/docs.json"))
    seen = []
    for result in schema.get_all_operations():
        op = result.ok()
        label = f"{op.method.upper()} {op.path}"
        if label not in OPERATIONS:
            continue
        seen.append(label)

        @given(case=op.as_strategy())
        @settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        def run(case):
            # The schema says "binary" for an image; it cannot say "a decodable PNG", so schema-valid bytes that
            # are not an image are rightly refused (400/415): schemathesis' positive-data check does not apply.
            case.call_and_validate(base_url=server.base, timeout=30, excluded_checks=[schemathesis.checks.positive_data_acceptance])

        run()
    assert sorted(seen) == sorted(OPERATIONS), seen
