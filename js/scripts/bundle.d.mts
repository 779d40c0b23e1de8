export const root: string;
export const staticFile: string;
export function buildStatic(): Promise<string>;
export function sizes(): Promise<Record<"client" | "react", { minified: number; gzipped: number }>>;
