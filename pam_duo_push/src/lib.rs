//! pam_duo_push
