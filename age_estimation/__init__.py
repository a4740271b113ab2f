"""Video-based age estimation with SIAM, the Spatially-Indexed Attention Model (Pei et al., arXiv 1711.08690)."""

__version__ = "0.1.0"
