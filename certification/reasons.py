"""What each reason code means to the pensioner, and what to do about it, in zh-CN and en."""

from __future__ import annotations

from dataclasses import dataclass

from core.text import DEFAULT_LOCALE

# code: ((zh-CN text, zh-CN advice), (en text, en advice))
REASONS: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "unreadable_media": (
        ("无法读取上传的视频。", "请重新录制并上传。"),
        ("The video could not be read.", "Record the video again and upload it."),
    ),
    "too_short": (
        ("视频太短。", "请录制3到10秒的视频。"),
        ("The video is too short.", "Record 3 to 10 seconds of video."),
    ),
    "too_long": (
        ("视频太长。", "请录制不超过15秒的视频。"),
        ("The video is too long.", "Record no more than 15 seconds."),
    ),
    "no_face": (
        ("视频中未检测到人脸。", "请将手机举到与眼睛齐平的位置，让面部位于画面中央。"),
        ("No face was found in the video.", "Hold the phone at eye level with your face in the middle."),
    ),
    "multiple_faces": (
        ("画面中有多张人脸。", "请确保画面中只有您本人。"),
        ("More than one face was in the picture.", "Make sure only you are in the picture."),
    ),
    "identity_changed": (
        ("视频中的人脸发生了变化。", "请由本人全程录制。"),
        ("The face changed during the video.", "Only the pensioner should appear, from start to end."),
    ),
    "face_too_small": (
        ("人脸太小。", "请将手机靠近一些，让面部占满取景框。"),
        ("Your face is too small in the picture.", "Hold the phone closer so your face fills the frame."),
    ),
    "too_dark": (
        ("光线太暗。", "请到光线明亮的地方，面向光源。"),
        ("It is too dark.", "Move to a bright place and face the light."),
    ),
    "too_blurred": (
        ("画面模糊。", "请握稳手机，或将手机靠在物体上。"),
        ("The picture is blurred.", "Hold the phone steady, or rest it against something."),
    ),
    "face_lost": (
        ("录制过程中人脸离开了画面。", "请保持面部始终在取景框内。"),
        ("Your face left the picture while recording.", "Keep your face inside the frame throughout."),
    ),
    "action_not_detected": (
        ("未检测到要求的动作。", "请按提示完成动作，转头时请转得更充分一些。"),
        ("The requested action was not seen.", "Do each action as asked; turn your head further."),
    ),
    "wrong_order": (
        ("动作顺序与要求不符。", "请按屏幕提示的顺序完成动作。"),
        ("The actions were not done in the order asked.", "Do the actions in the order shown on the screen."),
    ),
    "extra_action": (
        ("做了未要求的动作。", "请只做屏幕提示的动作，每个动作做一次。"),
        ("An action was done that was not asked for.", "Do only the actions shown, each one once."),
    ),
    "action_timing": (
        ("动作之间间隔太久，或未回到正面。", "每个动作完成后请回到正视镜头，再接着做下一个动作。"),
        (
            "Too long a pause, or no return to facing the camera between actions.",
            "After each action, face the camera again, then go on to the next one.",
        ),
    ),
    "no_motion": (
        ("未检测到真人动作。", "请本人面对镜头按提示完成动作。"),
        ("No live movement was seen.", "Face the camera yourself and do the actions shown."),
    ),
    "match_uncertain": (
        ("人脸比对结果不确定，已转人工审核。", "工作人员将尽快处理，无需重复提交。"),
        ("The face match was not certain; a staff member will review it.", "No need to submit again."),
    ),
    "not_same_person": (
        ("人脸与登记照片不一致。", "请由本人进行认证；如有疑问请联系社保经办机构。"),
        (
            "The face does not match the registered photo.",
            "The pensioner must certify in person; contact the social security office if this is wrong.",
        ),
    ),
    "replayed_media": (
        ("检测到重复提交的视频，已转人工审核。", "请每次认证时重新录制。"),
        ("This video was submitted before; a staff member will review it.", "Record a new video each time."),
    ),
    "reference_copy": (
        ("视频与登记照片过于一致，已转人工审核。", "请本人重新录制；工作人员将尽快处理。"),
        (
            "The video matches the registered photo too exactly; a staff member will review it.",
            "No need to submit again.",
        ),
    ),
    "edited_media": (
        ("视频经过剪辑，已转人工审核。", "请用本应用一次录制完成，不要剪辑。"),
        (
            "The video was cut and joined; a staff member will review it.",
            "Record in one go in this app, without editing.",
        ),
    ),
    "presentation_attack": (
        ("画面中的人脸疑似屏幕或照片，已转人工审核。", "请本人直接面对手机镜头录制。"),
        (
            "The face looked like a screen or a photo; a staff member will review it.",
            "Face the phone's camera yourself.",
        ),
    ),
    "face_collision": (
        ("人脸与其他参保人员相同，已转人工审核。", "工作人员将与您联系，无需重复提交。"),
        ("The face matches another insured person; a staff member will review it.", "No need to submit again."),
    ),
    "reference_missing": (
        ("登记照片暂不可用，已转人工审核。", "工作人员将与您联系，无需重复提交。"),
        ("Your registered photo cannot be used; a staff member will review this.", "No need to submit again."),
    ),
    "analysis_error": (
        ("系统暂时无法自动判断，已转人工审核。", "工作人员将尽快处理，无需重复提交。"),
        ("The check could not be completed automatically; a staff member will review it.", "No need to submit again."),
    ),
    "repeated_failures": (
        ("多次认证未通过，已转人工审核。", "工作人员将与您联系。"),
        ("Several attempts did not pass; a staff member will review them.", "Staff will contact you."),
    ),
    "review_rejected": (
        ("人工审核未通过。", "如有疑问请联系社保经办机构。"),
        ("A staff member did not confirm the certification.", "Contact the social security office if this is wrong."),
    ),
    "home_visit": (
        ("工作人员将上门为您办理认证。", "请保持电话畅通。"),
        ("Staff will visit you at home to certify.", "Keep your phone on so they can arrange the visit."),
    ),
}


@dataclass(frozen=True)
class Explanation:
    code: str
    text: str
    advice: str


def explain(code: str, locale: str) -> Explanation:
    zh, en = REASONS.get(code, REASONS["unreadable_media"])
    text, advice = zh if locale == DEFAULT_LOCALE else en
    return Explanation(code=code, text=text, advice=advice)
