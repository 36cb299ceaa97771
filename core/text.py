"""Messages a mobile app can show, in Simplified Chinese (the default) and English."""

from __future__ import annotations

DEFAULT_LOCALE = "zh-CN"
LOCALES = ("zh-CN", "en")

MESSAGES: dict[str, tuple[str, str]] = {
    # code: (zh-CN, en)
    "invalid_body": ("请求内容有误：{detail}", "The request is not valid: {detail}"),
    "body_too_large": ("请求内容过大。", "The request is too large."),
    "unsupported_media_type": (
        "请以application/json格式（UTF-8编码）提交请求内容。",
        "Send the request body as application/json (UTF-8).",
    ),
    "body_encoding": (
        "请求内容中的文字无法解码，请使用UTF-8编码。",
        "The text in the request body cannot be decoded; send it in UTF-8.",
    ),
    "body_too_deep": ("请求内容嵌套层级过深。", "The request body is nested too deeply."),
    "duplicate_key": (
        "请求内容中的字段“{key}”出现了不止一次。",
        "The field `{key}` appears more than once in the request body.",
    ),
    "control_character": (
        "字段“{field}”含有不允许的空字符（U+0000）。",
        "The field `{field}` contains a character that is not allowed (U+0000).",
    ),
    "not_found": ("未找到请求的内容。", "Nothing was found at this address."),
    "method_not_allowed": ("不支持此操作。", "This operation is not supported here."),
    "unauthenticated": ("请先登录。", "Please sign in first."),
    "token_invalid": ("登录已失效，请重新登录。", "Your sign-in is no longer valid. Please sign in again."),
    "forbidden": ("您无权执行此操作。", "You are not allowed to do this."),
    "internal_error": (
        "服务暂时不可用，请稍后重试。",
        "The service is temporarily unavailable. Please try again later.",
    ),
    "invalid_phone": ("请输入11位手机号码。", "Enter an 11-digit mainland China mobile number."),
    "otp_rate_limited": (
        "验证码发送过于频繁，请{minutes}分钟后再试。",
        "Too many codes were sent to this number. Try again in {minutes} minutes.",
    ),
    "otp_invalid": ("验证码错误，还可尝试{left}次。", "The code is wrong. {left} tries left."),
    "otp_expired": ("验证码已失效，请重新获取。", "The code has expired or was used. Request a new one."),
    "otp_locked": ("错误次数过多，请重新获取验证码。", "Too many wrong tries. Request a new code."),
    "otp_client_rate_limited": (
        "此网络请求验证码过于频繁，请{minutes}分钟后再试。",
        "Too many codes were requested from this network. Try again in {minutes} minutes.",
    ),
    "otp_unavailable": (
        "验证码发送繁忙，请{minutes}分钟后再试。",
        "Codes cannot be sent at the moment. Try again in {minutes} minutes.",
    ),
    "refresh_invalid": ("登录已过期，请重新登录。", "Your sign-in has expired. Please sign in again."),
    "operator_credentials": ("用户名、密码或动态口令错误。", "Wrong username, password or authenticator code."),
    "operator_locked": (
        "尝试次数过多，账号已暂时锁定。",
        "Too many failed attempts; the account is locked for a while.",
    ),
    # No parameters: the console shows it too, and fills in none.
    "sign_in_rate_limited": (
        "此网络登录失败次数过多，请稍后再试。",
        "Too many failed sign-ins from this network. Try again later.",
    ),
    "activation_mismatch": (
        "身份证号与本机号码登记的信息不符。",
        "This ID number does not match the person registered with this phone number.",
    ),
    "card_not_active": ("社保卡当前状态为“{card_status}”，不能使用。", "The card is {card_status} and cannot be used."),
    "card_not_lost": ("社保卡未挂失，无需解除。", "The card is not reported lost."),
    "recovery_proof_required": (
        "为确认是您本人解除挂失，请先在App中完成一次人脸认证，或到社保服务网点由工作人员核实身份，再获取验证码。",
        "To make sure it is you who cancels the loss report, first pass a face certification in the app, "
        "or have your identity checked at a social security office; then request the code.",
    ),
    "card_cancelled": ("社保卡已注销。", "The card has been cancelled."),
    "card_not_activated": ("社保卡尚未激活。", "The card has not been activated yet."),
    "device_required": ("请在已登记的手机上操作。", "Use the phone you signed in with."),
    "qr_invalid": ("二维码无效。", "This QR code is not valid."),
    "qr_expired": ("二维码已过期，请刷新。", "This QR code has expired. Ask the cardholder to refresh it."),
    "qr_used": ("二维码已使用，请刷新。", "This QR code was already used. Ask the cardholder to refresh it."),
    "qr_card_unusable": ("该社保卡当前不能使用。", "This card cannot be used at the moment."),
    "service_unavailable": ("服务暂时不可用。", "The service is not ready."),
    "dependency_unavailable": (
        "服务暂时繁忙，请稍后再试。您的操作没有完成，也没有扣款。",
        "The service is busy for a moment and your request was not completed. Please try again shortly.",
    ),
    "certification_required": (
        "请先完成人脸认证，再激活社保卡。",
        "Complete the face certification first, then activate the card.",
    ),
    "identity_not_linked": (
        "请先用身份证号激活社保卡，以核实您的身份。",
        "First confirm who you are: activate the card with your ID number.",
    ),
    "challenge_rate_limited": (
        "认证尝试过于频繁，请一小时后再试。",
        "Too many certification attempts. Try again in an hour.",
    ),
    "certification_under_review": (
        "您的认证正在人工审核中，请等待结果。",
        "Your certification is with a staff member; please wait for their decision.",
    ),
    "person_deceased": ("该人员已登记为死亡，不能认证。", "This person is registered as deceased."),
    "challenge_not_found": ("认证请求不存在，请重新开始。", "This certification was not found. Start again."),
    "challenge_used": ("该认证请求已提交过，请重新开始。", "This certification was already submitted. Start again."),
    "challenge_expired": ("认证请求已过期，请重新开始。", "This certification has expired. Start again."),
    "consent_required": (
        "请先同意人脸信息处理授权，再提交认证视频。",
        "Agree to the processing of your face images before submitting the video.",
    ),
    "upload_key_invalid": ("上传的文件不属于本次认证。", "The uploaded file does not belong to this certification."),
    "upload_missing": ("未找到上传的视频，请重新上传。", "The uploaded video was not found. Upload it again."),
    "upload_too_large": ("视频不能超过{max_mb}MB。", "The video must not be larger than {max_mb} MB."),
    "upload_empty": ("上传的文件是空的。", "The uploaded file is empty."),
    "not_a_video": ("请上传MP4、MOV或WebM格式的视频。", "Upload a video in MP4, MOV or WebM format."),
    "not_jpeg": ("照片须为JPEG格式。", "Photos must be JPEG images."),
    "frames_count": ("请上传{low}到{high}张照片。", "Upload between {low} and {high} photos."),
    "submission_parts": (
        "请上传一个视频（video）或一组照片（frames）。",
        "Upload either one video (field `video`) or a set of photos (field `frames`).",
    ),
    "submission_content_type": (
        "请以multipart/form-data上传文件，或以JSON提交已上传文件的s3_key。",
        "Send the file as multipart/form-data, or JSON with the s3_key of an uploaded file.",
    ),
    "check_not_found": ("未找到该认证记录。", "This check was not found."),
    # pension payments
    "withheld.not_certified": (
        "未完成待遇资格认证，本月养老金暂停发放；认证通过后将补发。",
        "Not paid: no face certification yet. It will be paid with the first payment after you pass.",
    ),
    "withheld.certification_expired": (
        "待遇资格认证已过期，本月养老金暂停发放；重新认证通过后将补发。",
        "Not paid: your certification had expired. It will be paid once you certify again.",
    ),
    "withheld.reported_deceased": (
        "因死亡登记（现已撤销）暂停发放，将随下次发放补发。",
        "Not paid because of a death report that has since been withdrawn; it will be paid with the next payment.",
    ),
    "payment_not_found": ("未找到该笔发放记录。", "This payment was not found."),
    "year_invalid": ("年份无效。", "This year is not valid."),
    "period_invalid": ("发放月份格式应为YYYY-MM。", "The month must be written YYYY-MM, e.g. 2026-12."),
    "disbursement_not_found": ("未找到该发放批次。", "This disbursement run was not found."),
    "disbursement_running": (
        "发放批次尚未完成，暂不能导出银行文件。",
        "The run has not finished; its bank file is not ready yet.",
    ),
    "bank_file_encoding": ("银行文件须为UTF-8编码的CSV。", "The bank file must be CSV in UTF-8."),
    "bank_file_refused": (
        "银行回盘文件有{lines}行无法处理，整个文件未导入。",
        "{lines} line(s) of the bank file cannot be taken; nothing was imported.",
    ),
    "cursor_invalid": ("分页参数无效。", "The page cursor is not valid."),
    # notifications
    "device_not_found": ("未找到该设备。", "This device was not found."),
    "notification_not_found": ("未找到该消息。", "This message was not found."),
    "delivery_not_found": ("未找到该发送记录。", "This delivery was not found."),
    "delivery_not_dead": (
        "该发送记录当前状态为“{state}”，只有发送失败的记录可以重发。",
        "This delivery is {state}; only dead deliveries can be sent again.",
    ),
    "check_claimed": ("该记录正由{operator}处理。", "{operator} is working on this check."),
    "check_not_reviewable": ("该记录无需人工审核。", "This check is not waiting for review."),
    "claim_required": ("请先领取该记录。", "Claim this check first."),
    "reason_required": ("请填写理由。", "Give a reason."),
    "reason_too_long": ("理由不能超过{most}个字。", "Keep the reason to {most} characters."),
    # medical account and QR charges
    "idempotency_key_required": (
        "请在请求头Idempotency-Key中为这笔收款附上一个编号（1至255个英文字符），重试时使用同一编号。",
        "Send an Idempotency-Key header (1 to 255 plain characters) naming this payment; use the same one to retry.",
    ),
    "idempotency_key_reused": (
        "该编号已用于另一笔不同的请求，请为新的收款换一个编号。",
        "This Idempotency-Key was already used for a different request. Use a new key for a new payment.",
    ),
    "request_in_flight": (
        "这笔请求正在处理中，请稍等几秒再用同一编号重试。",
        "This request is still being processed. Wait a few seconds, then retry with the same key.",
    ),
    "insufficient_balance": (
        "医保个人账户余额不足，无法支付这笔费用。本次未使用该二维码。",
        "The medical account balance does not cover this amount. This attempt did not use up the QR code.",
    ),
    "charge_not_found": ("未找到这笔收款。", "This payment was not found."),
    "refund_exceeds_charge": (
        "退款金额超过这笔收款还可退的金额，最多还可退{refundable}元。",
        "The refund is more than is left of this payment: at most {refundable} yuan can still be refunded.",
    ),
    # death records
    "national_id_invalid": ("身份证号码无效。", "This is not a valid national ID number."),
    "person_not_found": ("未找到该身份证号码对应的人员。", "No person is registered with this national ID number."),
    # the operator console
    "console_form_expired": (
        "页面已过期，请刷新后重新提交。",
        "This page has expired. Reload it and submit again.",
    ),
    "person_query_invalid": (
        "请输入完整的18位身份证号码、11位手机号码或12位社保卡号。",
        "Type a full 18-character national ID number, an 11-digit phone number or a 12-digit card number.",
    ),
    "card_number_invalid": (
        "社保卡号校验位不符，请核对。",
        "This card number's check digit is wrong; check the number.",
    ),
    "not_deceased": (
        "该人员没有登记死亡，无需撤销。",
        "This person is not registered as deceased: nothing to reverse.",
    ),
}

CARD_STATUS_NAMES: dict[str, tuple[str, str]] = {
    "pending_activation": ("待激活", "not activated"),
    "active": ("正常", "active"),
    "suspended": ("暂停使用", "suspended"),
    "reported_lost": ("已挂失", "reported lost"),
    "cancelled": ("已注销", "cancelled"),
}


def negotiate(accept_language: str | None) -> str:
    """Pick zh-CN or en from an Accept-Language header (first supported wins; zh-CN by default)."""
    if not accept_language:
        return DEFAULT_LOCALE
    for part in accept_language.split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("en"):
            return "en"
        if tag.startswith("zh"):
            return "zh-CN"
    return DEFAULT_LOCALE


def message(code: str, locale: str, **params: object) -> str:
    """The text for `code`; a `card_status` parameter is shown by its name in that language."""
    zh, en = MESSAGES.get(code, MESSAGES["internal_error"])
    template = en if locale == "en" else zh
    if (status := params.get("card_status")) in CARD_STATUS_NAMES:
        params["card_status"] = CARD_STATUS_NAMES[str(status)][1 if locale == "en" else 0]
    try:
        return template.format(**params)
    except (KeyError, IndexError):
        return template
