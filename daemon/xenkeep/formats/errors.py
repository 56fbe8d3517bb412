"""Errors raised by the format codecs.

Every malformed input ends in a subclass of :class:`FormatError` whose message
names the member, block or offset at fault, so a caller can report it as is.
"""

from __future__ import annotations


class FormatError(Exception):
    """Input that does not follow the format it claims to be."""


class XvaFormatError(FormatError):
    """A malformed XVA archive (tar layout, ova.xml, chunk checksums)."""


class VhdFormatError(FormatError):
    """A malformed VHD file (footer, header, BAT, blocks, parent link)."""


class CloudConfigError(FormatError):
    """A custom #cloud-config or network configuration that cloud-init would refuse."""
