"""Image decoding: encoded bytes to uint8 pixels, within a pixel budget.

`decode_image` decodes JPEG, PNG, GIF, BMP and WebP bytes to gray or RGB;
`decode_jpeg_window` decodes only a window of a JPEG, with the pixels of a full
decode. Both first check the image's size, read from its header, against a pixel
budget (`max_pixels`, `MAX_PIXELS` by default: `encoded_image_size`,
`check_image_size`) and fail BEFORE decoding when it is larger, so a small file
cannot cost gigabytes: every decode of the data pipelines, the predictor and
`serve_encoded` goes through them (a tf.data map that uses them with
`ignore_errors` drops such an image like any undecodable one).
"""

from __future__ import annotations

import tensorflow as tf

MAX_PIXELS = 100_000_000  # default pixel budget of one served image (height * width)
_FORMATS = "JPEG, PNG, GIF, BMP or WebP"


def _header_uint(header: tf.Tensor, start: int, length: int, *, big_endian: bool) -> tf.Tensor:
    digits = header[start : start + length]
    if big_endian:
        digits = digits[::-1]
    return tf.reduce_sum(digits * tf.constant([256**i for i in range(length)], tf.int64))


def encoded_image_size(contents: tf.Tensor) -> tf.Tensor:
    """(height, width) int64 `[2]` of an encoded image, read from its header only.

    JPEG, PNG, GIF (logical screen), BMP and WebP are understood; other bytes give
    `[-1, -1]`. Nothing is decoded, so this costs the same for any image size.
    """

    def jpeg():
        return tf.cast(tf.image.extract_jpeg_shape(contents)[:2], tf.int64)

    def other():
        # 32 header bytes, zero-padded so that short files index safely.
        magic = tf.strings.join([tf.strings.substr(contents, 0, 32), tf.constant(b"\0" * 32)])
        head = tf.cast(tf.io.decode_raw(magic, tf.uint8)[:32], tf.int64)

        def starts(prefix, pos=0):
            return tf.equal(tf.strings.substr(magic, pos, len(prefix)), prefix)

        def le(start, length):
            return _header_uint(head, start, length, big_endian=False)

        bmp_height = le(22, 4)
        bmp_height = tf.abs(tf.where(bmp_height >= 2**31, bmp_height - 2**32, bmp_height))
        vp8l = le(21, 4)
        candidates = [
            (
                starts(b"\x89PNG\r\n\x1a\n"),
                [
                    _header_uint(head, 20, 4, big_endian=True),
                    _header_uint(head, 16, 4, big_endian=True),
                ],
            ),
            (starts(b"GIF8"), [le(8, 2), le(6, 2)]),
            (starts(b"BM"), [bmp_height, le(18, 4)]),
            (
                tf.logical_and(starts(b"RIFF"), starts(b"WEBPVP8 ", 8)),
                [le(28, 2) % 2**14, le(26, 2) % 2**14],
            ),
            (
                tf.logical_and(starts(b"RIFF"), starts(b"WEBPVP8L", 8)),
                [(vp8l // 2**14) % 2**14 + 1, vp8l % 2**14 + 1],
            ),
            (
                tf.logical_and(starts(b"RIFF"), starts(b"WEBPVP8X", 8)),
                [le(27, 3) + 1, le(24, 3) + 1],
            ),
        ]
        size = tf.constant([-1, -1], tf.int64)
        for matches, hw in reversed(candidates):
            size = tf.where(matches, tf.stack(hw), size)
        return size

    return tf.cond(tf.io.is_jpeg(contents), jpeg, other)


def check_image_size(contents: tf.Tensor, max_pixels: int = MAX_PIXELS) -> tf.Tensor:
    """Returns `contents` once its header says it has at most `max_pixels` pixels.

    Fails with an InvalidArgumentError naming the size and the budget (or the
    supported formats) BEFORE anything is decoded: a 400 KB PNG of 20000 x 20000
    pixels would otherwise cost gigabytes.
    """
    max_pixels = int(max_pixels)
    if max_pixels < 1:
        raise ValueError(f"`max_pixels` must be positive. Received: max_pixels={max_pixels}")
    size = encoded_image_size(contents)
    known = tf.debugging.Assert(
        size[0] >= 0, [f"Unsupported image format: expected {_FORMATS} bytes."]
    )
    with tf.control_dependencies([known]):
        small = tf.debugging.Assert(
            size[0] * size[1] <= max_pixels,
            [
                f"Image too large: more than max_pixels={max_pixels} pixels "
                "(raise max_pixels to accept it). Received height, width:",
                size,
            ],
        )
    with tf.control_dependencies([small]):
        return tf.identity(contents)


def why_undecodable(contents: bytes, max_pixels: int = MAX_PIXELS) -> str:
    """Why `decode_image` refuses encoded bytes, in words (for logs; runs eagerly)."""
    try:
        height, width = (int(v) for v in encoded_image_size(tf.constant(contents)).numpy())
    except tf.errors.OpError:
        return "corrupt or truncated image"
    if height < 0:
        return f"not a {_FORMATS} image"
    if height * width > max_pixels:
        return (
            f"too large: {height}x{width} pixels by its header, more than "
            f"max_pixels={max_pixels} (not decoded)"
        )
    return "corrupt or truncated image"


def decode_image(contents: tf.Tensor, channels: int, *, max_pixels: int = MAX_PIXELS) -> tf.Tensor:
    """Decodes JPEG/PNG/BMP/GIF/WebP bytes to uint8 `[h, w, channels]`.

    Fails (InvalidArgumentError) without decoding when the header says the image
    has more than `max_pixels` pixels, or is in none of these formats
    (`check_image_size`).

    Gray, RGB, RGBA and CMYK inputs are all converted to `channels` (1 or 3) by the
    decoders themselves (RGBA loses its alpha channel, CMYK JPEGs become RGB). GIF,
    BMP and WebP decoders only produce colour, and libjpeg converts only 1- and
    3-component JPEGs to gray, so for `channels=1` those (and CMYK JPEGs) decode to
    RGB and convert with the ITU-R 601-2 luma weights.
    """
    contents = check_image_size(contents, max_pixels)
    if channels == 1:

        def native():
            return tf.io.decode_image(contents, channels=1, expand_animations=False)

        def via_rgb():
            rgb = tf.io.decode_image(contents, channels=3, expand_animations=False)
            return tf.image.rgb_to_grayscale(rgb)

        def jpeg():
            cmyk = tf.equal(tf.image.extract_jpeg_shape(contents)[2], 4)
            return tf.cond(cmyk, via_rgb, native)

        png = tf.equal(tf.strings.substr(contents, 0, 8), b"\x89PNG\r\n\x1a\n")
        image = tf.cond(tf.io.is_jpeg(contents), jpeg, lambda: tf.cond(png, native, via_rgb))
    else:
        image = tf.io.decode_image(contents, channels=channels, expand_animations=False)
    image.set_shape([None, None, channels])
    return image


# Decoded margin around a JPEG crop window: one 4:2:0 MCU (16 px). libjpeg's chroma
# upsampling at the edge of a cropped decode differs from a full decode within it.
JPEG_WINDOW_MARGIN = 16


def decode_jpeg_window(
    contents: tf.Tensor, box, channels: int, *, max_pixels: int = MAX_PIXELS
) -> tf.Tensor:
    """The `box` = (y, x, height, width) window of a JPEG, decoding little else.

    `tf.image.decode_and_crop_jpeg` on exactly the box differs from decoding the
    whole image and cropping at the box's edges for chroma-subsampled JPEGs (a few
    levels, in about half of random boxes): libjpeg upsamples the chroma at the
    decoded region's border from the border itself. Decoding the box plus a margin
    of one MCU and cropping in memory gives exactly the full decode's pixels, as
    PIL and torchvision (which decode whole images) see them. Like `decode_image`,
    fails before decoding when the whole image has more than `max_pixels` pixels.
    """
    contents = check_image_size(contents, max_pixels)
    y, x, h, w = (tf.convert_to_tensor(v, tf.int32) for v in box)
    shape = tf.image.extract_jpeg_shape(contents)
    y0 = tf.maximum(y - JPEG_WINDOW_MARGIN, 0)
    x0 = tf.maximum(x - JPEG_WINDOW_MARGIN, 0)
    y1 = tf.minimum(y + h + JPEG_WINDOW_MARGIN, shape[0])
    x1 = tf.minimum(x + w + JPEG_WINDOW_MARGIN, shape[1])
    window = tf.image.decode_and_crop_jpeg(
        contents, tf.stack([y0, x0, y1 - y0, x1 - x0]), channels=channels
    )
    image = window[y - y0 : y - y0 + h, x - x0 : x - x0 + w]
    image.set_shape([None, None, channels])
    return image
