"""cert-agent: log in to an electronic tax bureau with the certificate on a tax medium."""

__version__ = "0.1.0"
