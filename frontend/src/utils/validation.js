// Form rules shared with the API's own validation (issue: REST API).

import { t } from '@/i18n'

// 3-32 letters, digits, underscores or Chinese characters.
export const USERNAME_PATTERN = /^[A-Za-z0-9_\u4e00-\u9fff]{3,32}$/
export const PASSWORD_MIN = 8
export const PASSWORD_MAX = 128
export const TITLE_MAX = 255

/** Return a Chinese error for a username, or '' when it is acceptable. */
export function checkUsername(value) {
  if (!value) return t('请输入用户名')
  if (!USERNAME_PATTERN.test(value)) return t('用户名为 3-32 位字母、数字、下划线或汉字')
  return ''
}

/** Return a Chinese error for a password, or '' when it is acceptable. */
export function checkPassword(value) {
  if (!value) return t('请输入密码')
  if (value.length < PASSWORD_MIN || value.length > PASSWORD_MAX) return t('密码长度为 8-128 位')
  return ''
}

/**
 * Turn a check function (value -> error text or '') into an Element Plus form rule.
 * `required` only marks the field with the asterisk; the check decides.
 */
export function ruleFrom(check, { trigger = 'blur', required = false } = {}) {
  return {
    trigger,
    required,
    validator: (_rule, value, callback) => {
      const message = check(value)
      if (message) callback(new Error(message))
      else callback()
    },
  }
}

/** Return the JSON the admin film routes accept: writable fields only, blanks as null. */
export function movieBody(values) {
  const body = { title: (values.title || '').trim(), tags: [...(values.tags || [])] }
  for (const key of ['director', 'actors', 'summary', 'imdb_url', 'poster_url']) {
    const value = (values[key] || '').trim()
    body[key] = value || null
  }
  body.release_date = values.release_date || null
  return body
}
