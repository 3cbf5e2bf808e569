"""Image folders, PNG output, grids and videos."""

from .images import (
    IMAGE_EXTENSIONS,
    ImageFolder,
    ImageWriter,
    make_grid,
    read_image_folder,
    save_png,
    seed_filename,
    to_uint8,
)
from .video import VIDEO_FORMATS, read_video_info, write_video

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFolder",
    "ImageWriter",
    "VIDEO_FORMATS",
    "make_grid",
    "read_image_folder",
    "read_video_info",
    "save_png",
    "seed_filename",
    "to_uint8",
    "write_video",
]
