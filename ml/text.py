r"""Text for the ``text`` model: cleaning, tokens, a vocabulary, ids (pure Python, no torch).

The pipeline (the worker runs it on an uploaded ``text_csv`` before training):

1. :func:`clean_text` applies ``preprocessing.text_cleaning`` in this order:
   lowercase; strip punctuation with the seed's ``clean_text`` regex
   ``[^\w\s]`` (every character that is neither a Unicode word character nor
   whitespace is removed, so ``don't`` becomes ``dont``). This is not Keras
   ``TextVectorization``'s ``lower_and_strip_punctuation``, which removes a
   fixed set of ASCII punctuation only: the two differ on ``_`` (kept here,
   removed by Keras) and on non-ASCII symbols such as ``€`` or emoji (removed
   here, kept by Keras). Then collapse runs of whitespace into one space and
   trim; remove English stop words (scikit-learn's list, below: the seed's
   ``clean_text`` baseline).
2. :func:`tokenize` splits the cleaned text on whitespace.
3. :func:`build_vocabulary` counts tokens **on the training split only** and
   keeps the ``vocab_size - 2`` most frequent (ties: alphabetical); id 0 is
   padding and id 1 is out-of-vocabulary, as in Keras ``TextVectorization``
   (``max_tokens`` counts both).
4. :func:`encode` maps the first ``max_length`` tokens to ids and pads with 0.

:func:`text_parameter_count` counts, for the torch-free plan (``POST /v1/specs/validate``),
the parameters of the model ``ml.models.build_model`` builds: the embedding table has
``vocab_size`` rows whatever the corpus holds, so the count depends on the
spec alone.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

from ml.spec import TextCleaning, TextModel

PAD, OOV = 0, 1
RESERVED = 2

# scikit-learn's ENGLISH_STOP_WORDS (from the Glasgow Information Retrieval
# Group's list), copied so this module imports nothing heavy; a test checks
# that the two agree.
ENGLISH_STOP_WORDS = frozenset({
    'a', 'about', 'above', 'across', 'after', 'afterwards', 'again', 'against', 'all', 'almost',
    'alone', 'along', 'already', 'also', 'although', 'always', 'am', 'among', 'amongst',
    'amoungst', 'amount', 'an', 'and', 'another', 'any', 'anyhow', 'anyone', 'anything', 'anyway',
    'anywhere', 'are', 'around', 'as', 'at', 'back', 'be', 'became', 'because', 'become',
    'becomes', 'becoming', 'been', 'before', 'beforehand', 'behind', 'being', 'below', 'beside',
    'besides', 'between', 'beyond', 'bill', 'both', 'bottom', 'but', 'by', 'call', 'can',
    'cannot', 'cant', 'co', 'con', 'could', 'couldnt', 'cry', 'de', 'describe', 'detail', 'do',
    'done', 'down', 'due', 'during', 'each', 'eg', 'eight', 'either', 'eleven', 'else',
    'elsewhere', 'empty', 'enough', 'etc', 'even', 'ever', 'every', 'everyone', 'everything',
    'everywhere', 'except', 'few', 'fifteen', 'fifty', 'fill', 'find', 'fire', 'first', 'five',
    'for', 'former', 'formerly', 'forty', 'found', 'four', 'from', 'front', 'full', 'further',
    'get', 'give', 'go', 'had', 'has', 'hasnt', 'have', 'he', 'hence', 'her', 'here', 'hereafter',
    'hereby', 'herein', 'hereupon', 'hers', 'herself', 'him', 'himself', 'his', 'how', 'however',
    'hundred', 'i', 'ie', 'if', 'in', 'inc', 'indeed', 'interest', 'into', 'is', 'it', 'its',
    'itself', 'keep', 'last', 'latter', 'latterly', 'least', 'less', 'ltd', 'made', 'many', 'may',
    'me', 'meanwhile', 'might', 'mill', 'mine', 'more', 'moreover', 'most', 'mostly', 'move',
    'much', 'must', 'my', 'myself', 'name', 'namely', 'neither', 'never', 'nevertheless', 'next',
    'nine', 'no', 'nobody', 'none', 'noone', 'nor', 'not', 'nothing', 'now', 'nowhere', 'of',
    'off', 'often', 'on', 'once', 'one', 'only', 'onto', 'or', 'other', 'others', 'otherwise',
    'our', 'ours', 'ourselves', 'out', 'over', 'own', 'part', 'per', 'perhaps', 'please', 'put',
    'rather', 're', 'same', 'see', 'seem', 'seemed', 'seeming', 'seems', 'serious', 'several',
    'she', 'should', 'show', 'side', 'since', 'sincere', 'six', 'sixty', 'so', 'some', 'somehow',
    'someone', 'something', 'sometime', 'sometimes', 'somewhere', 'still', 'such', 'system',
    'take', 'ten', 'than', 'that', 'the', 'their', 'them', 'themselves', 'then', 'thence',
    'there', 'thereafter', 'thereby', 'therefore', 'therein', 'thereupon', 'these', 'they',
    'thick', 'thin', 'third', 'this', 'those', 'though', 'three', 'through', 'throughout', 'thru',
    'thus', 'to', 'together', 'too', 'top', 'toward', 'towards', 'twelve', 'twenty', 'two', 'un',
    'under', 'until', 'up', 'upon', 'us', 'very', 'via', 'was', 'we', 'well', 'were', 'what',
    'whatever', 'when', 'whence', 'whenever', 'where', 'whereafter', 'whereas', 'whereby',
    'wherein', 'whereupon', 'wherever', 'whether', 'which', 'while', 'whither', 'who', 'whoever',
    'whole', 'whom', 'whose', 'why', 'will', 'with', 'within', 'without', 'would', 'yet', 'you',
    'your', 'yours', 'yourself', 'yourselves',
})  # fmt: skip

_PUNCTUATION = re.compile(r"[^\w\s]+")
_WHITESPACE = re.compile(r"\s+")


def clean_text(text: str, cleaning: TextCleaning) -> str:
    if cleaning.lowercase:
        text = text.lower()
    if cleaning.strip_punctuation:
        text = _PUNCTUATION.sub("", text)
    if cleaning.collapse_whitespace:
        text = _WHITESPACE.sub(" ", text).strip()
    if cleaning.remove_stop_words:
        # Stop words are lowercase: compare case-insensitively so that cleaning
        # without `lowercase` still drops "The" but keeps the original casing.
        kept = [t for t in text.split() if t.lower() not in ENGLISH_STOP_WORDS]
        text = " ".join(kept)
    return text


def tokenize(text: str, cleaning: TextCleaning) -> list[str]:
    return clean_text(text, cleaning).split()


def build_vocabulary(token_lists: Iterable[Sequence[str]], vocab_size: int) -> dict[str, int]:
    """token -> id for the ``vocab_size - 2`` most frequent tokens (ids from 2)."""
    counts: Counter[str] = Counter()
    for tokens in token_lists:
        counts.update(tokens)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    keep = max(vocab_size - RESERVED, 0)
    return {token: i + RESERVED for i, (token, _) in enumerate(ranked[:keep])}


def encode(tokens: Sequence[str], vocab: dict[str, int], max_length: int) -> list[int]:
    ids = [vocab.get(t, OOV) for t in tokens[:max_length]]
    return ids + [PAD] * (max_length - len(ids))


def text_parameter_count(model: TextModel, n_out: int) -> int:
    """Trainable parameters of the ``text`` model (``ml.shorthands.text_as_graph``, built by
    ``ml.models.build_model``; a test holds the two together)."""
    d = model.embedding_dim
    total = model.vocab_size * d  # token embedding
    if model.encoder == "transformer":
        total += model.max_length * d  # learned positions
        ff = 4 * d
        per_layer = (
            3 * d * d + 3 * d  # attention in-projection (q, k, v) with bias
            + d * d + d  # attention out-projection
            + d * ff + ff + ff * d + d  # feed-forward
            + 2 * 2 * d  # two LayerNorms
        )  # fmt: skip
        total += model.num_layers * per_layer + 2 * d  # + final LayerNorm
    return total + d * n_out + n_out  # classifier head
