"""Code shared by the server and the client: the wire format, dictionaries and keys.

Nothing here may import TensorFlow, Starlette or a store client; the client
wheel depends on that.
"""
