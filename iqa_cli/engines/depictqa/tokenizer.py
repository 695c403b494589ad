"""The prompt tokenizer: Vicuna's SentencePiece model, tokenizing exactly as the authors' slow LLaMA tokenizer.

Read with sentencepiece alone (no transformers tokenizer class), so the decode workers and the confidence rules
never import torch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from iqa_cli.errors import ModelFilesError

SPACE = "\u2581"  # SentencePiece's word-boundary mark "▁"


def _without_dummy_prefix(model_proto: bytes) -> bytes:
    """The SentencePiece model with ``normalizer_spec.add_dummy_prefix = false``.

    transformers' non-legacy LlamaTokenizer (what the authors ran) loads the model this way through
    protobuf; we edit the wire format directly rather than depend on protobuf: ModelProto field 3 is
    the normaliser spec, whose field 3 is the flag, and a repeated scalar field takes its last value.
    """

    def varint(data: bytes, pos: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value, pos

    def encode_varint(value: int) -> bytes:
        out = bytearray()
        while True:
            out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
            value >>= 7
            if not value:
                return bytes(out)

    out = bytearray()
    pos = 0
    while pos < len(model_proto):
        start = pos
        key, pos = varint(model_proto, pos)
        wire = key & 7
        if wire == 0:
            _, pos = varint(model_proto, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = varint(model_proto, pos)
            payload = model_proto[pos : pos + length]
            pos += length
            if key >> 3 == 3:
                payload += b"\x18\x00"  # field 3 (add_dummy_prefix), varint, false
                out += encode_varint(key) + encode_varint(len(payload)) + payload
                continue
        else:
            raise ModelFilesError("tokenizer.model is not a SentencePiece model (unexpected wire type)")
        out += model_proto[start:pos]
    return bytes(out)


class PromptTokenizer:
    """LLaMA's SentencePiece tokenizer, tokenizing exactly as the authors' slow LlamaTokenizer did.

    transformers changed how LLaMA text is split over its versions (the ``legacy`` flag, then the move to
    fast tokenizers only), and a different split changes the answers. This class reproduces the slow
    tokenizer of transformers 4.35 (the authors' pin) from ``tokenizer.model`` and the folder's
    ``legacy`` setting, on top of the sentencepiece library alone:

    - special tokens written in the text ("</s>") become their ids; the text between them is encoded
      piecewise;
    - non-legacy (``"legacy": false``): one "▁" before the whole text, none after a special token;
    - legacy (the default when the config is silent): every piece gets SentencePiece's dummy prefix.

    `encode` adds no BOS/EOS. The attribute names follow transformers' where callers share them.
    """

    def __init__(self, model_file: Path, *, legacy: bool = True) -> None:
        import sentencepiece as spm

        proto = Path(model_file).read_bytes()
        self.legacy = legacy
        self.sp = spm.SentencePieceProcessor(model_proto=proto)
        # Non-legacy encodes without the automatic prefix and adds its own "▁".
        self.sp_plain = self.sp if legacy else spm.SentencePieceProcessor(model_proto=_without_dummy_prefix(proto))
        self.unk_token_id, self.bos_token_id, self.eos_token_id = (
            self.sp.unk_id(),
            self.sp.bos_id(),
            self.sp.eos_id(),
        )
        self.pad_token_id = self.eos_token_id  # the authors pad with EOS
        self.unk_token, self.bos_token, self.eos_token = (
            self.sp.id_to_piece(i) for i in (self.unk_token_id, self.bos_token_id, self.eos_token_id)
        )
        self.special_ids = frozenset((self.unk_token_id, self.bos_token_id, self.eos_token_id))
        specials = sorted((self.unk_token, self.bos_token, self.eos_token), key=len, reverse=True)
        self._split = re.compile("(" + "|".join(re.escape(s) for s in specials) + ")")
        self._unk_length = len(self.sp_plain.encode(self.unk_token))

    @classmethod
    def from_folder(cls, folder: Path) -> PromptTokenizer:
        """From a LLaMA folder: ``tokenizer.model``, and ``legacy`` from ``tokenizer_config.json``."""
        model = folder / "tokenizer.model"
        if not model.is_file():
            raise ModelFilesError(f"no tokenizer.model in {folder}; fetch the models with `iqa model download`")
        legacy = True  # transformers 4.35 treats a missing flag as legacy (with a warning)
        config = folder / "tokenizer_config.json"
        if config.is_file():
            value = json.loads(config.read_text()).get("legacy")
            legacy = True if value is None else bool(value)
        return cls(model, legacy=legacy)

    def _encode_piece(self, text: str) -> list[int]:
        if self.legacy or not text.startswith((SPACE, " ")):
            return self.sp_plain.encode(text)
        # A leading space must stay a "▁" of its own word: encode behind the unk text, then drop that.
        return self.sp_plain.encode(self.unk_token + text)[self._unk_length :]

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, special-token strings mapped to their ids, no BOS/EOS added."""
        if not text:
            return []
        if not self.legacy:
            text = SPACE + text.replace(SPACE, " ")
        ids: list[int] = []
        special = {
            self.unk_token: self.unk_token_id,
            self.bos_token: self.bos_token_id,
            self.eos_token: self.eos_token_id,
        }
        for part in self._split.split(text):
            if part in special:
                ids.append(special[part])
            elif part:
                ids.extend(self._encode_piece(part))
        space = self.sp.piece_to_id(SPACE)
        if not self.legacy and len(ids) > 1 and ids[0] == space and ids[1] in self.special_ids:
            ids = ids[1:]  # the added "▁" before a leading special token is dropped, as transformers does
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of `ids` as the slow tokenizer decodes: special tokens skipped, the first "▁" dropped."""
        pieces = [self.sp.id_to_piece(int(i)) for i in ids if not (skip_special_tokens and int(i) in self.special_ids)]
        if pieces and pieces[0].startswith(SPACE):
            pieces[0] = pieces[0][1:]
        return self.sp_plain.decode_pieces([p for p in pieces if p])

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self.sp.id_to_piece(int(i)) for i in ids]

    def convert_tokens_to_ids(self, piece: str) -> int:
        return self.sp.piece_to_id(piece)
