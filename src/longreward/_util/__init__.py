"""The bottom layer: small helpers that several packages share.

Modules here import only the standard library, third-party packages and ``longreward.errors``,
never another longreward package, so any package may import them without creating a cycle
(``tests/test_layers.py`` checks this). A helper that only one package uses belongs in that
package instead.
"""
