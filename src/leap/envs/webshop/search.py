"""Product search: BM25 (k1 0.9, b 0.4) with English stop words and Snowball stemming, over the
fields WebShop indexes: title, description, the first bullet point and the options, lower-cased."""

from __future__ import annotations

import logging

import bm25s
import numpy as np
import Stemmer

from leap.envs.webshop.products import Product

MAX_RESULTS = 50
logging.getLogger("bm25s").setLevel(logging.WARNING)


def index_text(product: Product) -> str:
    options = ", and ".join(f"{name}: {', '.join(values)}" for name, values in product.options.items())
    first_bullet = product.bullet_points[0] if product.bullet_points else ""
    return " ".join([product.title, product.description, first_bullet, options]).lower()


class ProductSearch:
    """Ranks the catalogue for a query; at most ``MAX_RESULTS`` ASINs, best first."""

    def __init__(self, products: list[Product]) -> None:
        self.asins = [p.asin for p in products]
        self.stemmer = Stemmer.Stemmer("english")
        tokens = bm25s.tokenize(
            [index_text(p) for p in products], stopwords="en", stemmer=self.stemmer, show_progress=False
        )
        self.bm25 = bm25s.BM25(k1=0.9, b=0.4)
        self.bm25.index(tokens, show_progress=False)

    def search(self, query: str, k: int = MAX_RESULTS) -> list[str]:
        tokens = bm25s.tokenize(
            [query.lower()], stopwords="en", stemmer=self.stemmer, show_progress=False, return_ids=False
        )
        known = [[t for t in tokens[0] if t in self.bm25.vocab_dict]]
        if not known[0]:
            return []
        ids, scores = self.bm25.retrieve(known, k=min(k, len(self.asins)), show_progress=False, n_threads=1)
        return [self.asins[i] for i, s in zip(ids[0], scores[0], strict=True) if s > 0 and np.isfinite(s)]
