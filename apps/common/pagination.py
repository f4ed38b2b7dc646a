"""Pagination of the API's lists: DRF's page numbers, with `page` given at most once, never empty, never oversized."""

from __future__ import annotations

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request

from apps.common.filters import MAX_NUMBER_LENGTH


class StrictPageNumberPagination(PageNumberPagination):
    def get_page_number(self, request: Request, paginator: object) -> str | int:
        values = request.query_params.getlist(self.page_query_param)
        if len(values) > 1:
            raise ValidationError({self.page_query_param: ["Give this parameter once."]})
        if values and values[0] == "":
            raise ValidationError({self.page_query_param: ["This parameter needs a value."]})
        if values and len(values[0]) > MAX_NUMBER_LENGTH:  # refused before the paginator converts it
            raise ValidationError({self.page_query_param: [f"At most {MAX_NUMBER_LENGTH} characters."]})
        return super().get_page_number(request, paginator)
