"""What to tell a user who asked for a model without `auto=true`."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote


def manual_instructions(model_id: str, models_dir: str, base_url: str) -> dict[str, Any]:
    """Three ways to fetch a model, each a single command that lands in the models dir.

    No shell scripts: the seed pointed at `download_model.sh`, which is gone.
    """
    query = quote(model_id, safe="/:")
    repo_id, _, tag = model_id.partition(":")
    # `org/repo:QUANT` (a validated tag: letters, digits, `_.-`): hf has no tags, only globs;
    # file names spell the quant in either case.
    only = f' --include "*{tag.upper()}*" "*{tag.lower()}*"' if tag else ""
    return {
        "status": "manual",
        "message": f"Manual download instructions for {model_id}",
        "model_id": model_id,
        "instructions": {
            "api": (
                f'curl -X POST "{base_url}/api/download-model?model_id={query}&auto=true" '
                '-H "Authorization: Bearer $PROXY_API_KEY"'
            ),
            "cli": f"talktuah pull {model_id}",
            "hf": f"hf download {repo_id}{only} --cache-dir {models_dir}",
        },
        "models_dir": models_dir,
    }
