"""The ``.narinfo`` file of a binary cache: what it says about one store path, and what Nix signs.

A narinfo is ``Key: value`` lines. The fields a substituter relies on: ``StorePath``; ``URL``
of the (maybe compressed) NAR file, its ``Compression``, ``FileHash`` and ``FileSize``; the
uncompressed ``NarHash`` and ``NarSize`` Nix checks the unpacked NAR against; ``References``
(base names); ``CA`` for a content-addressed path; ``Sig`` lines. A signature covers only
the :meth:`PathInfo.fingerprint` (path, NAR hash, NAR size, references): the file fields
are not signed, which is why Nix checks the unpacked NAR itself against ``NarHash``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from vgpubuild.errors import InvalidHashError
from vgpubuild.nixhash import Hash


class NarInfoError(ValueError):
    """A narinfo text that is not one (missing or malformed field)."""


@dataclass(frozen=True)
class PathInfo:
    """What a store path is, independent of how a cache stores its NAR."""

    store_path: str
    nar_hash: Hash
    nar_size: int
    references: tuple[str, ...]
    content_address: str | None

    def fingerprint(self) -> bytes:
        """What Nix signs: ``1;PATH;sha256:NIX32;SIZE;REF,REF`` (references as full paths)."""
        directory = str(PurePosixPath(self.store_path).parent)
        refs = ",".join(f"{directory}/{r}" for r in self.references)
        nar = self.nar_hash.format("nix32", prefix=True)
        return f"1;{self.store_path};{nar};{self.nar_size};{refs}".encode()


@dataclass(frozen=True)
class NarInfo:
    """A whole narinfo: the path, where its NAR file is and how it is compressed, signatures."""

    path: PathInfo
    url: str
    compression: str
    file_hash: Hash
    file_size: int
    sigs: tuple[str, ...] = ()

    def render(self) -> bytes:
        p = self.path
        lines = [
            f"StorePath: {p.store_path}",
            f"URL: {self.url}",
            f"Compression: {self.compression}",
            f"FileHash: {self.file_hash.format('nix32', prefix=True)}",
            f"FileSize: {self.file_size}",
            f"NarHash: {p.nar_hash.format('nix32', prefix=True)}",
            f"NarSize: {p.nar_size}",
            "References: " + " ".join(p.references),
        ]
        if p.content_address:
            lines.append(f"CA: {p.content_address}")
        lines.extend(f"Sig: {sig}" for sig in self.sigs)
        return ("\n".join(lines) + "\n").encode()

    @classmethod
    def parse(cls, text: str) -> NarInfo:
        """Read the fields vgpubuild compares; others (``Deriver``, ``System``) are ignored."""
        fields: dict[str, str] = {}
        sigs: list[str] = []
        for line in text.splitlines():
            key, _, value = line.partition(":")
            value = value.strip()
            if key == "Sig":
                sigs.append(value)
            else:
                fields.setdefault(key, value)
        try:
            path = PathInfo(
                store_path=fields["StorePath"],
                nar_hash=Hash.parse(fields["NarHash"]),
                nar_size=int(fields["NarSize"]),
                references=tuple(fields.get("References", "").split()),
                content_address=fields.get("CA") or None,
            )
            return cls(
                path=path,
                url=fields["URL"],
                compression=fields.get("Compression", "bzip2"),  # Nix's default when absent
                file_hash=Hash.parse(fields["FileHash"]) if "FileHash" in fields else path.nar_hash,
                file_size=int(fields.get("FileSize", path.nar_size)),
                sigs=tuple(sigs),
            )
        except KeyError as exc:
            raise NarInfoError(f"it has no {exc.args[0]} field") from None
        except (InvalidHashError, ValueError) as exc:
            raise NarInfoError(f"a field is malformed ({exc})") from None
