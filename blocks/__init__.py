"""The pipeline's Prefect blocks (`warehouse.py`) and their creation from the environment (`create.py`)."""

from __future__ import annotations

from prefect.blocks.core import Block


def saved_block_slug(block: Block) -> str | None:
    """`<type-slug>/<name>` of a block saved under a name, None for one never saved: names a block in a
    message without its values."""
    name = getattr(block, "_block_document_name", None)
    if name and not getattr(block, "_is_anonymous", False):
        return f"{block.get_block_type_slug()}/{name}"
    return None
