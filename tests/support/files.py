"""Files for attachment tests, made here: images with metadata to strip, a PDF with text, an executable."""

from __future__ import annotations

import io

from PIL import Image

GPS_IFD = 0x8825
MAKE = 0x010F


def image_bytes(
    fmt: str = "PNG", *, size=(64, 48), color=(200, 40, 40), gps: bool = True, orientation: int | None = None
) -> bytes:
    """An image in ``fmt`` with EXIF (a camera make and, with ``gps``, a position) where the format keeps EXIF."""
    image = Image.new("RGB", size, color)
    image.putpixel((0, 0), (0, 0, 255))  # a marker pixel: where the top-left corner went
    out = io.BytesIO()
    options = {}
    if fmt in ("JPEG", "PNG", "WEBP"):
        exif = Image.Exif()
        exif[MAKE] = "FakeCam"
        if gps:
            exif.get_ifd(GPS_IFD).update({1: "N", 2: (52.0, 22.0, 1.0), 3: "E", 4: (4.0, 53.0, 2.0)})
        if orientation is not None:
            exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    if fmt == "PNG":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("Comment", "secret location notes")
        options["pnginfo"] = info
    image.save(out, fmt, **options)
    return out.getvalue()


def pdf_bytes(text: str = "Quarterly numbers are up", pages: int = 1) -> bytes:
    """A small valid PDF whose pages each show ``text`` (Helvetica), with a correct xref table."""
    objects: list[bytes] = []
    kids = " ".join(f"{3 + 2 * n} 0 R" for n in range(pages))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode())
    font_id = 3 + 2 * pages
    for n in range(pages):
        stream = f"BT /F1 18 Tf 72 720 Td ({text} {n + 1}) Tj ET".encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * n} 0 R "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


# The start of a Windows executable (an "MZ" header and the DOS stub's words): binary, not text.
EXECUTABLE = (
    b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00"
    + b"This program cannot be run in DOS mode.\r\r\n$"
    + bytes(range(256)) * 4
)
