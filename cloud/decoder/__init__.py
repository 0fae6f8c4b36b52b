"""The crop decoder: embeddings back to crop images, trained and served in the cloud.

Modules: ``model`` (the convolutional decoder), ``losses`` (pixel + SSIM + consistency with the
frozen encoder), ``dataset`` (cached crop/embedding pairs), ``train`` (the loop), ``checkpoint``
(weights + what they decode), ``metrics`` (PSNR/SSIM), ``report`` (JPEG at equal bytes, grid),
``service`` (batched, cached PNGs on demand), ``errors``. Importing this package imports no
torch: the modules that need it import it themselves.
"""
