# Float rounding shared by the key builder and the encoder: the value a key names
# and the value TensorFlow receives must be rounded by the same expression.

from libc.math cimport round


cdef inline double round_scaled(double x, double scale, bint narrow) noexcept nogil:
    # C round() is half away from zero and keeps the sign of zero: Go math.Round.
    cdef double r = round(x * scale) / scale
    if narrow:
        r = <double>(<float>r)
    return r
