// One fetch wrapper for the whole app: JSON in and out, the session cookie sent,
// and every failure turned into an ApiRequestError carrying the server's
// {"error": {"code", "message"}} so that views can show the message.

export class ApiRequestError extends Error {
  constructor(status, code, message, details) {
    super(message)
    this.name = 'ApiRequestError'
    this.status = status
    this.code = code
    this.details = details
  }
}

const STATUS_MESSAGES = {
  0: '网络连接失败,请检查网络后重试',
  401: '请先登录',
  403: '没有权限执行此操作',
  404: '请求的资源不存在',
  429: '请求过于频繁,请稍后再试',
  500: '服务器内部错误',
  502: '服务器暂时无法访问',
  503: '服务暂时不可用,请稍后再试',
}

export function messageForStatus(status) {
  return STATUS_MESSAGES[status] || `请求失败(${status})`
}

function queryString(params) {
  if (!params) return ''
  const search = new URLSearchParams()
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === '') continue
    search.append(key, String(value))
  }
  const text = search.toString()
  return text ? `?${text}` : ''
}

/** Build the error for a failed response, reading the JSON error body when there is one. */
export async function errorFromResponse(response) {
  let body = null
  try {
    body = await response.json()
  } catch {
    body = null
  }
  const error = body && typeof body === 'object' ? body.error : null
  return new ApiRequestError(
    response.status,
    (error && error.code) || `http_${response.status}`,
    (error && error.message) || messageForStatus(response.status),
    error && error.details,
  )
}

let unauthorizedHandler = null

/** Call `handler` whenever the API answers 401 (the session ended on the server). */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler
}

/**
 * Send a request to the API and return the parsed JSON body (null for 204).
 *
 * `options.params` become the query string, `options.body` is sent as JSON.
 */
export async function request(method, url, options = {}) {
  const headers = { Accept: 'application/json' }
  const init = { method, headers, credentials: 'same-origin' }
  if (options.body !== undefined) {
    headers['Content-Type'] = 'application/json'
    init.body = JSON.stringify(options.body)
  }
  if (options.signal) init.signal = options.signal
  let response
  try {
    response = await fetch(url + queryString(options.params), init)
  } catch (cause) {
    if (cause && cause.name === 'AbortError') throw cause
    throw new ApiRequestError(0, 'network_error', messageForStatus(0))
  }
  if (!response.ok) {
    // A password reset or a disabled account ends the session: forget the user.
    if (response.status === 401 && unauthorizedHandler) unauthorizedHandler()
    throw await errorFromResponse(response)
  }
  if (response.status === 204) return null
  const type = response.headers.get('Content-Type') || ''
  if (!type.includes('json')) return null
  return response.json()
}

export const http = {
  get: (url, params, options = {}) => request('GET', url, { ...options, params }),
  post: (url, body, options = {}) => request('POST', url, { ...options, body }),
  put: (url, body, options = {}) => request('PUT', url, { ...options, body }),
  patch: (url, body, options = {}) => request('PATCH', url, { ...options, body }),
  delete: (url, options = {}) => request('DELETE', url, options),
}
