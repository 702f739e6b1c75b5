"""User-vector recommendations from Python on the quickstart collection.

Run `mmalign quickstart` and `python examples/tuxpaint_interactions.py` first; the users are made up.

    python examples/recommend_library.py food-fan
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone

from mmalign.connectors.interactions import read_interactions
from mmalign.plugin import Recommender
from mmalign.schemas import Interaction, StoreConfig, UserVectorConfig


def main(argv: list[str]) -> int:
    user = argv[0] if argv else "food-fan"
    rec = Recommender(
        "stamps",
        store=StoreConfig(path="mmalign-data/qdrant"),
        cfg=UserVectorConfig(negative_below=3, half_life_days=30),
    )
    try:
        counts = rec.rebuild_users(read_interactions("examples/data/tuxpaint_interactions.csv").interactions)
        print(f"{counts.users} users rebuilt ({counts.unknown_item_rows} rows with unknown items)")
        for hit in rec.recommend(user, k=5):
            print(f"  {hit.score:.3f}  {hit.id}")
        # the user now likes a frog: an incremental update, no recomputation
        rec.update_user(
            user,
            [
                Interaction(
                    user_id=user, item_id="animals/amphibians/frog", weight=5, timestamp=datetime.now(timezone.utc)
                )
            ],
        )
        # the demo interactions are from 2023: with a 30-day half-life, today's frog outweighs them
        print("after liking a frog today:", [h.id for h in rec.recommend(user, k=5)])
        print(
            "anonymous session like two apples:",
            [h.id for h in rec.more_like(["food/fruit/apple_red", "food/fruit/apple_green"], k=3)],
        )
    finally:
        rec.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
