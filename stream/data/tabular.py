"""CSV row readers that know where they are, and value parsers that turn a bad cell into a
DataError naming file, line, column, what was expected and what arrived. Used by every
loader, so all of them report malformed input the same way. JSONL and parquet rows (event
files, and convert's inputs) are read by stream.contract.files."""
from __future__ import annotations

import csv
import gzip
import io
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

from stream.data import DataError, show


def open_text(path: str | Path) -> TextIO:
    """Open a text file for reading (gzip when it ends in .gz); a UTF-8 BOM is dropped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "an existing file", "no such file")
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


class CsvTable:
    """A CSV file with a header: checks the header has the `required` columns, then yields
    (line number, row) with every row checked to have as many cells as the header.

        with CsvTable(path, ["user_id", "item_id"]) as table:
            u = table.columns["user_id"]
            for line, row in table: ...
    """

    def __init__(
        self, path: str | Path, required: Sequence[str], delimiter: str = ",", optional: Sequence[str] = ()
    ) -> None:
        self.path = str(path)
        self._fh = open_text(path)
        self._reader = csv.reader(self._fh, delimiter=delimiter)
        try:
            header = next(self._reader, None)
        except (csv.Error, UnicodeDecodeError) as exc:
            self.close()
            raise DataError(self.path, 1, "a CSV header", f"unreadable text ({exc})") from None
        if not header:
            self.close()
            raise DataError(self.path, 1, f"a header with columns {', '.join(required)}", "an empty file")
        self.header = [name.strip() for name in header]
        missing = [name for name in required if name not in self.header]
        if missing:
            self.close()
            sep = "tab" if delimiter == "\t" else repr(delimiter)
            raise DataError(
                self.path,
                1,
                f"a header with columns {', '.join(required)} (separated by {sep})",
                f"{show(delimiter.join(self.header), 120)} (missing {', '.join(missing)})",
            )
        self.columns = {name: i for i, name in enumerate(self.header)}
        self.optional = {name: self.columns[name] for name in optional if name in self.columns}

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        width = len(self.header)
        reader = self._reader
        try:
            for row in reader:
                if len(row) != width:
                    if not row or (len(row) == 1 and not row[0].strip()):
                        continue  # blank line
                    raise DataError(
                        self.path,
                        reader.line_num,
                        f"{width} columns as in the header",
                        f"{len(row)}: {show(','.join(row), 80)}",
                    )
                yield reader.line_num, row
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(self.path, reader.line_num + 1, "a well-formed UTF-8 CSV row", str(exc)) from None

    def error(self, line: int, column: str, expected: str, value: object) -> DataError:
        return DataError(self.path, line, f"column {column} to be {expected}", show(value))

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> CsvTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- cell parsers


def parse_int(value: str, source: str, line: int, column: str) -> int:
    try:
        return int(value)
    except ValueError:
        pass
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number != int(number):
        raise DataError(source, line, f"column {column} to be an integer", show(value))
    return int(number)


def parse_ms(value: object, source: str, line: int, column: str, unit: str = "ms") -> int:
    """A number (text or JSON) in seconds or milliseconds -> integer epoch milliseconds."""
    if isinstance(value, bool) or value is None or value == "":
        raise DataError(source, line, f"column {column} to be a number ({unit})", show(value))
    if isinstance(value, int):
        number: float = value
    else:
        try:
            number = int(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            try:
                number = float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                number = math.nan
    if not math.isfinite(number):
        raise DataError(source, line, f"column {column} to be a number ({unit})", show(value))
    if unit == "s":
        return int(round(number * 1000))
    if unit == "ms":
        return int(round(number))
    raise ValueError(f"unit must be 's' or 'ms', got {unit!r}")


def parse_id_list(value: str, source: str, line: int, column: str) -> list[int]:
    """'[12, 7, 3]' (KuaiSAR word-id lists) -> [12, 7, 3]; '[]' -> []."""
    text = value.strip()
    if len(text) < 2 or text[0] != "[" or text[-1] != "]":
        raise DataError(source, line, f"column {column} to be a list of integer ids like [12, 7, 3]", show(value))
    inner = text[1:-1].strip()
    if not inner:
        return []
    try:
        return [int(part) for part in inner.split(",")]
    except ValueError:
        raise DataError(
            source, line, f"column {column} to be a list of integer ids like [12, 7, 3]", show(value)
        ) from None
