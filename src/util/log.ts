import { pino, type Logger } from "pino";

export type { Logger };

/** Structured JSON logs; pretty only when stdout is a terminal. */
export function createLogger(level: string, name = "achd"): Logger {
  const pretty = process.stdout.isTTY && process.env.ACH_LOG_JSON !== "1";
  return pino({
    name,
    level,
    ...(pretty ? { transport: { target: "pino-pretty", options: { colorize: true, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname" } } } : {}),
  });
}
