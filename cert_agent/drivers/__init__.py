"""Access to tax media through their vendors' libraries.

What every driver offers is ``interface.TokenDriver``; ``factory.open_driver`` opens the right
driver for each library. Driver-neutral parts, for any driver to reuse: ``models`` (the values
drivers return), ``errors``, ``pin`` (the PIN as a secret value and the new-PIN policy),
``certificate`` (what a certificate says), ``retries`` (the tries-left rule), ``catalog`` and
``modules`` (the media catalog, and the libraries loaded by default), ``pcsc`` (readers and
cards). One package per interface: ``pkcs11/`` (python-pkcs11); SKF (GM/T 0016) is next.
"""
