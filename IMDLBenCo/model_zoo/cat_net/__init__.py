"""CAT-Net (Kwon et al., IJCV 2022 / WACV 2021), registered as ``Cat_Net``, and its
post-function ``cat_net_post_func`` (registered in ``POSTFUNCS``)."""

from .cat_net import Cat_Net, convert_authors_checkpoint
from .post_function import cat_net_post_func

__all__ = ["Cat_Net", "cat_net_post_func", "convert_authors_checkpoint"]
