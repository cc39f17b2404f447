"""The toy catalogue every test shares: three clusters whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd

ITEMS = pd.DataFrame(
    {
        "item_id": [1, 2, 3, 4, 5, 6, 7, 8],
        "title": [
            "Heat (1995)",
            "Collateral (2004)",
            "Thief (1981)",
            "Toy Story (1995)",
            "Up (2009)",
            "Cars (2006)",
            "Alien (1979)",
            "Aliens (1986)",
        ],
        "genres": [
            "Action|Crime",
            "Action|Crime",
            "Crime|Drama",
            "Animation|Comedy",
            "Animation|Comedy",
            "Animation|Comedy",
            "Horror|Sci-Fi",
            "Action|Horror|Sci-Fi",
        ],
        "director": [
            "Michael Mann",
            "Michael Mann",
            "Michael Mann",
            "John Lasseter",
            "Pete Docter",
            "John Lasseter",
            "Ridley Scott",
            "James Cameron",
        ],
        "year": ["1995", "2004", "1981", "1995", "2009", "2006", "1979", "1986"],
    }
)

# user 10 likes crime, user 20 likes animation, user 30 watched many things;
# item 4 (Toy Story) is the most popular item overall.
INTERACTIONS = pd.DataFrame(
    {
        "user_id": [10, 10, 20, 20, 30, 30, 30, 30, 40],
        "item_id": [1, 2, 4, 5, 4, 7, 1, 5, 4],
        "timestamp": [100, 200, 100, 200, 100, 200, 300, 400, 50],
        "rating": [5.0, 4.0, 5.0, 4.0, 3.0, 4.0, 5.0, 2.0, 4.0],
    }
)

# One axis per cluster: crime (0), animation (1), sci-fi (2); a little spread inside.
VECTORS = np.array(
    [
        [1.0, 0.0, 0.0, 0.00],
        [0.9, 0.0, 0.0, 0.20],
        [0.8, 0.0, 0.1, 0.30],
        [0.0, 1.0, 0.0, 0.00],
        [0.0, 0.9, 0.0, 0.20],
        [0.0, 0.8, 0.1, 0.30],
        [0.0, 0.0, 1.0, 0.00],
        [0.1, 0.0, 0.9, 0.20],
    ],
    dtype=np.float32,
)
VECTORS /= np.linalg.norm(VECTORS, axis=1, keepdims=True)
