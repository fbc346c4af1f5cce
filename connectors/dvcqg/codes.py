"""The portal's ``error_code`` values, as the connector reads them and the simulator writes them.

The published integration guides fix only ``"00"`` (success); the rest are this project's choice,
one code per way a request can fail, so that the connector can tell a stale session (log in again)
from everything else (an ``UpstreamError`` carrying the code and the portal's message).
"""

from __future__ import annotations

__all__ = ["ALREADY_EXISTS", "INVALID_DATA", "INVALID_REQUEST", "LOGIN_FAILED", "MESSAGES", "NOT_FOUND", "OK",
           "RETRYABLE", "SESSION_EXPIRED", "SYSTEM_ERROR", "UNKNOWN_SERVICE", "normalise"]

OK = "00"
INVALID_REQUEST = "01"   # not JSON, or no madonvi / service
INVALID_DATA = "02"      # a dossier or progress record breaks the portal's rules
UNKNOWN_SERVICE = "03"   # no such service
NOT_FOUND = "04"         # progress (or an update) for a dossier the portal does not hold
ALREADY_EXISTS = "05"    # a new dossier (isUpdating false) whose code is taken by a different one
SESSION_EXPIRED = "10"   # session missing, unknown or expired: log in again
LOGIN_FAILED = "11"      # wrong user name or password
SYSTEM_ERROR = "99"      # the portal's own failure; worth retrying later

# Worth sending again later: the portal's own trouble, or a session it keeps refusing (a login
# that fails may be the portal's identity service being down). Every other code is permanent: the
# same request will be refused the same way.
RETRYABLE = frozenset({SESSION_EXPIRED, LOGIN_FAILED, SYSTEM_ERROR})

MESSAGES = {
    OK: "Thành công",
    INVALID_REQUEST: "Yêu cầu không hợp lệ",
    INVALID_DATA: "Dữ liệu không hợp lệ",
    UNKNOWN_SERVICE: "Dịch vụ không được hỗ trợ",
    NOT_FOUND: "Không tìm thấy hồ sơ",
    ALREADY_EXISTS: "Hồ sơ đã tồn tại",
    SESSION_EXPIRED: "Phiên làm việc đã hết hạn hoặc không hợp lệ, vui lòng đăng nhập lại",
    LOGIN_FAILED: "Tên đăng nhập hoặc mật khẩu không đúng",
    SYSTEM_ERROR: "Hệ thống đang bận, vui lòng thử lại sau",
}


def normalise(code: object) -> str | None:
    """The code as two digits: some portal answers write ``0`` or ``"0"`` for ``"00"``."""
    if isinstance(code, bool) or code is None:
        return None
    if isinstance(code, int):
        return f"{code:02d}"
    if isinstance(code, str):
        text = code.strip()
        return text.zfill(2) if text.isdigit() else text
    return None
